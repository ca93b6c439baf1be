"""Checks `xinterp prepare` runs before any notebook starts: every encoder and every data
source of a profile can be had, and where the data comes from, said out loud.

`data_provenance(profile)` names the data source and lists every offline substitute
the profile would train or evaluate on (task, language, split, the file standing in
and the manifest's note). `problems(profile)` returns what cannot be loaded, each
message naming the encoder or dataset and the ways out; the hub is probed once per
process (`hub.unreachable_reason`), so an unreachable hub is reported in seconds.
"""

from __future__ import annotations

from . import data, labels
from .encoders import EncoderUnavailableError, check_encoder_available
from .hub import unreachable_reason
from .profiles import Profile
from .readers import DataFormatError

USED_SPLITS = ("train", "dev")  # what fine-tuning and the sweeps read


def profile_languages(profile: Profile) -> list[str]:
    """Return the languages of the profile's pairs, sources first, in order."""
    out: list[str] = []
    for pair in profile.pair_tuples():
        for lang in pair:
            if lang not in out:
                out.append(lang)
    return out


def _families(profile: Profile) -> dict[str, list[str]]:
    """Return {dataset family: the profile's tasks that read it}, in task order."""
    out: dict[str, list[str]] = {}
    for task in profile.tasks:
        out.setdefault(labels.TASK_FAMILY[task], []).append(task)
    return out


def data_provenance(profile: Profile) -> list[str]:
    """Return lines naming the profile's data source and every offline substitute it
    uses: `substitute: <tasks> <lang> <split> <- <file>: <note>`."""
    source = data.resolve_source(profile.data)
    asked = "the profile's data=hub" if profile.data == "hub" else (
        f"data={profile.data}" if profile.data else "no data field: found automatically")
    if isinstance(source, data.HubSource):
        line = (f"data: the official sources ({asked}): WikiANN {source.repo('wikiann')} "
                f"and XNLI {source.repo('xnli')} from the Hugging Face hub, UD r2.7 "
                f"CoNLL-U files from the UniversalDependencies GitHub repositories")
        if source.ud_base_url() != source.UD_BASE_URL:
            line += f" (mirror: {source.ud_base_url()})"
        return [line]
    lines = [f"data: offline copies in {getattr(source, 'data_dir', source)} ({asked})"]
    if not isinstance(source, data.OfflineSource):
        return lines
    subs = []
    for family, tasks in _families(profile).items():
        for lang in profile_languages(profile):
            for split in USED_SPLITS:
                try:
                    where, note = source.describe(family, lang, split)
                except (data.MissingSplitError, FileNotFoundError):
                    continue  # reported by problems()
                if note:
                    subs.append(f"  substitute: {'/'.join(tasks)} {lang} {split} <- {where}: "
                                f"{note}")
    if subs:
        lines.append(f"data: {len(subs)} split(s) stand in for official ones "
                     "(records and Table 1 say so too):")
        lines.extend(subs)
    else:
        lines.append("data: every split used is the official one")
    return lines


def encoder_problems(profile: Profile, log=None) -> list[str]:
    """Return one message per encoder of the profile that cannot be loaded (hub name
    neither cached nor reachable, bad folder); `log` gets a line per usable one."""
    out = []
    for name in profile.encoders:
        try:
            what = check_encoder_available(name)
        except (EncoderUnavailableError, FileNotFoundError, OSError, ValueError) as err:
            out.append(str(err))
            continue
        if log:
            log(f"encoder {name}: {what}")
    return out


def data_problems(profile: Profile) -> list[str]:
    """Return one message per (task family, language, split) of the profile that its data
    source cannot give. Offline: manifest entries and files are checked (no data read).
    Hub: nothing is read while the hub is reachable (Table 1 downloads it next); when it
    is not, each split is looked up in the local caches only, failing at once."""
    source = data.resolve_source(profile.data)
    out = []
    hub_down = isinstance(source, data.HubSource) and unreachable_reason() is not None
    for family, tasks in _families(profile).items():
        failed, first = [], None
        for lang in profile_languages(profile):
            for split in USED_SPLITS:
                try:
                    if isinstance(source, data.OfflineSource):
                        source.describe(family, lang, split)
                    elif hub_down:
                        source.read(family, lang, split)
                except (data.MissingSplitError, FileNotFoundError, RuntimeError,
                        DataFormatError) as err:
                    failed.append(f"{lang} {split}")
                    first = first or str(err)
        if failed:  # one message a dataset: the first error, and which splits fail
            out.append(f"{'/'.join(tasks)}: {len(failed)} split(s) cannot be loaded "
                       f"({', '.join(failed)}); the first: {first}")
    return out


def problems(profile: Profile, log=None) -> list[str]:
    """Return every reason the profile cannot run here (encoders, then data); empty when
    all can be loaded. `log` (e.g. print) gets the provenance and encoder lines."""
    lines = data_provenance(profile)
    if log:
        for line in lines:
            log(line)
    return encoder_problems(profile, log) + data_problems(profile)
