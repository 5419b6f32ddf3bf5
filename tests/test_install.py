"""`pip install .` (not editable) works away from the checkout: the packages import, the recipes a
run reads at run time ship inside the package (the named backbone `resdet:shapes_r18` is produced
from them, the transfer protocols are listed), and nothing is read from the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

from tests.tools.tiny_runs import TINY_CLS

ROOT = Path(__file__).resolve().parents[1]

#: run inside the installed environment, from an empty directory
PROBE = textwrap.dedent(
    """
    import dataclasses, json, sys
    from pathlib import Path

    import backbones.resnet
    import resdet
    from resdet.benchmarks.transfer import PROTOCOL_DIR, protocol_path
    from resdet.io.named_weights import NAMED_SOURCES
    from resdet.runs.named_weights import produce_named_weights

    spec = NAMED_SOURCES["shapes_r18"]
    NAMED_SOURCES["shapes_r18"] = dataclasses.replace(spec, overrides=tuple(sys.argv[1:]))
    weights = produce_named_weights("resdet:shapes_r18", progress=False)
    print(json.dumps({
        "resdet": resdet.__file__,
        "backbones": backbones.resnet.__file__,
        "recipe": str(spec.config),
        "protocols": sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml")),
        "bccd": str(protocol_path("bccd_r18_fpn")),
        "weights": weights,
    }))
    """
)


def test_non_editable_install_runs_from_anywhere(tmp_path):
    env_dir = tmp_path / "venv"
    # torch and the other dependencies come from this interpreter's site-packages; the project
    # itself is built and installed as a wheel into the new environment
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # a copy without build outputs, as a fresh clone has none (an old build/ would be reused)
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "output", ".cache")
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", str(source)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["RESDET_CACHE"] = str(tmp_path / "cache")
    shrunk = [*TINY_CLS, "solver.max_iter=2", "solver.steps=[1]", "test.eval_period=0"]
    run = subprocess.run(
        [str(python), "-c", PROBE, *shrunk], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    found = __import__("json").loads(run.stdout.splitlines()[-1])
    installed = env_dir.resolve()
    for key in ("resdet", "backbones", "recipe", "bccd", "weights"):
        assert Path(found[key]).resolve().is_relative_to(installed) or key == "weights", found
        assert not Path(found[key]).resolve().is_relative_to(source), found
    assert found["protocols"] == sorted(
        p.stem for p in (ROOT / "configs" / "transfer").glob("*.yaml")
    )
    assert Path(found["weights"]) == tmp_path / "cache" / "pretrained" / "shapes_r18.pth"
    assert Path(found["weights"]).is_file()
