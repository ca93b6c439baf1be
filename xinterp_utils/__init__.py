"""Library behind the xinterp notebooks: data, encoders, fine-tuning, interpolation, figures."""

import warnings

__version__ = "0.1.0"

# transformers and datasets import tqdm.auto, which warns in every Jupyter kernel that
# lacks ipywidgets (not a dependency); our bars fall back to text on purpose
# (xinterp_utils.progress), so the warning says nothing a reader can act on.
warnings.filterwarnings("ignore", message="IProgress not found")
