"""Ship templates/ and contrib/ci/ inside the wheel; the rest is pyproject.toml.

templates/ stays a top-level folder of the repository, as the layout requires; a wheel has no
such place, so the build copies it next to the vendor modules (vendors/templates/, which
`vendors.TEMPLATES` looks for first), and the CI templates next to `provctl init`
(reconciler/cli/ci/). An editable install reads the repository's folders directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


# repository folder -> where it goes in the wheel
DATA = {"templates": "vendors/templates", "contrib/ci": "reconciler/cli/ci"}


class BuildWithTemplates(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for src, dest in DATA.items():
            target = Path(self.build_lib) / dest
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / src, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not self.editable_mode:
            for src, dest in DATA.items():
                outputs += [str(Path(self.build_lib) / dest / p.relative_to(HERE / src))
                            for p in sorted((HERE / src).rglob("*")) if p.is_file()]
        return outputs

setup(cmdclass={"build_py": BuildWithTemplates})
