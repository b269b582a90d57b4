"""Where each pretrained weights file comes from, where its ecosystem caches it, and whether the
network can fetch a missing one now.

torchvision keeps its files in ``$TORCH_HOME/hub/checkpoints``; timm reads the Hugging Face cache
(``$HF_HOME/hub``), or torch's for its few models that only have a URL. A cached file is used
without touching the network. A missing one is fetched only when the download host (or the
HTTPS proxy) answers within a second or two: otherwise one error names the file to place and
where, instead of a minute of timeouts and retries inside torch.hub or huggingface_hub.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import urllib.request
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from tlcli.core.errors import WeightsError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
# Name lookup, connection and a proxy's answer together: a working network needs a fraction of
# this, and waiting longer only delays the error on a dead one.
PROBE_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class WeightsFile:
    url: str  # where it is downloaded from
    place_at: Path  # where a copy made by hand goes
    found: Path | None  # the cached copy the loader reads, if any
    cache_variable: str  # the environment variable that moves the cache
    also: str = ""  # a further step the cache's layout needs
    custom_load: bool = False  # timm: the model reads this file's own format itself


def torch_hub_file(url: str) -> WeightsFile:
    """The file torch.hub keeps for ``url`` (torchvision's weights, and timm's URL-only models)."""
    path = torch_hub_path(url)
    return WeightsFile(url, path, path if path.is_file() else None, "TORCH_HOME")


def torch_hub_path(url: str) -> Path:
    """Where torch.hub keeps (and first looks for) the file behind ``url``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def timm_weights_file(name: str) -> WeightsFile | None:
    """The file ``timm.create_model(name, pretrained=True)`` reads; None when it has no weights."""
    import timm

    config = timm.models.get_pretrained_cfg(name)
    if config is None or not (config.hf_hub_id or config.url):
        return None
    if not config.hf_hub_id:
        return replace(torch_hub_file(config.url), custom_load=bool(config.custom_load))
    from huggingface_hub import constants, try_to_load_from_cache

    repo, _, revision = config.hf_hub_id.partition("@")
    revision = revision or "main"
    wanted = config.hf_hub_filename or "pytorch_model.bin"
    # timm prefers the safetensors twin of a .bin file, as huggingface's loaders do.
    twin = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}.get(
        wanted, wanted[:-4] + ".safetensors" if wanted.endswith(".bin") else wanted)
    found = None
    for filename in dict.fromkeys((twin, wanted)):
        cached = try_to_load_from_cache(repo, filename, revision=revision)
        if isinstance(cached, str):
            found = Path(cached)
            break
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    # Without a refs file huggingface_hub's own offline look-up misses a snapshot named by a branch.
    also = "" if re.fullmatch(r"[0-9a-f]{40}", revision) else f" and write '{revision}' into {folder / 'refs' / revision}"
    return WeightsFile(f"{constants.ENDPOINT}/{repo}/resolve/{revision}/{twin}", folder / "snapshots" / revision / twin,
                       found, "HF_HOME", also, custom_load=config.custom_load == "hf" and bool(config.hf_hub_filename))


def require(weights: WeightsFile, what: str) -> None:
    """Return when ``weights`` is cached or its host answers; otherwise raise the error that says
    which file to place where."""
    if weights.found is None:
        reason = offline_reason(weights.url)
        if reason is not None:
            raise missing_error(weights, what, f"no network: {reason}")


def missing_error(weights: WeightsFile, what: str, reason: str) -> WeightsError:
    return WeightsError(
        f"pretrained weights for {what} are not cached and cannot be downloaded ({reason}): "
        f"download {weights.url} and place it at {weights.place_at}{weights.also} "
        f"(set {weights.cache_variable} to move the cache), or use --weights none"
    )


def offline_reason(url: str) -> str | None:
    """Why ``url`` cannot be fetched now, or None when its host (or the proxy in between) answers."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{name} is set"
    parts = urlparse(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    proxies = urllib.request.getproxies()
    proxy = None if urllib.request.proxy_bypass(host) else proxies.get(parts.scheme) or proxies.get("all")
    if proxy and "://" not in proxy:
        proxy = f"http://{proxy}"
    return _probe(host, port, proxy)


@lru_cache(maxsize=16)
def _probe(host: str, port: int, proxy: str | None) -> str | None:
    # A thread bounds the name lookup too, which ignores socket timeouts.
    outcome: list[str | None] = []
    worker = threading.Thread(target=lambda: outcome.append(_connect(host, port, proxy)), daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S)
    if not outcome:
        return f"no answer from {_where(host, port, proxy)} within {PROBE_TIMEOUT_S:g} s"
    return outcome[0]


def _where(host: str, port: int, proxy: str | None) -> str:
    if proxy is None:
        return f"{host}:{port}"
    via = urlparse(proxy)  # without the credentials a proxy URL may carry
    return f"the proxy {via.scheme}://{via.hostname}" + (f":{via.port}" if via.port else "")


def _connect(host: str, port: int, proxy: str | None) -> str | None:
    via = urlparse(proxy) if proxy else None
    address = (via.hostname or "", via.port or (443 if via.scheme == "https" else 80)) if via else (host, port)
    where = _where(host, port, proxy)
    try:
        with socket.create_connection(address, timeout=PROBE_TIMEOUT_S) as connection:
            if via is None or via.scheme != "http":
                return None
            # A proxy can accept connections and never relay them: ask it for the host, as a download would.
            connection.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            status = connection.recv(256).split(b"\r\n")[0].decode("latin-1").strip()
    except socket.gaierror:
        return f"cannot resolve {address[0]}"
    except TimeoutError:
        return f"no answer from {where} within {PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    if not status:
        return f"{where} closed the connection"
    code = status.split()[1] if len(status.split()) > 1 else ""
    return f"{where} answered '{status}' for {host}" if code.startswith("5") else None
