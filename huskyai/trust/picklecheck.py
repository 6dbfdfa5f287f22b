"""What a pickle would import, judged without running it (picklescan reads the opcodes only).

picklescan is maintained, is what the Hugging Face Hub scans uploads with, reads PyTorch zip files
and reports every global a pickle references. Its own verdict cannot be used as is: a genuine
fastai export references builtins.getattr, functools.partial, operator.itemgetter and cloudpickle's
function rebuilders, which picklescan rates "dangerous". So Husky AI applies a strict policy of its
own: every global must come from the modules a Husky AI learner is made of, and the few
code-capable globals fastai needs are named one by one. Anything else (os.system, subprocess,
eval, exec, ...) fails. Because cloudpickle can rebuild arbitrary functions, no scan makes a pickle
safe; the sha256 check against the (signed) model card is what guards loading. This is the second
line, and a report for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# module prefixes a Husky AI fastai export is made of
ALLOWED_MODULES = (
    "fastai.", "fastcore.", "fasttransform.", "plum.", "torch", "timm.", "huskyai.", "PIL.Image",
    "numpy", "pathlib", "inspect", "typing", "random", "collections", "_codecs", "_operator",
)
# named globals outside those modules that fastai's cloudpickle export needs
ALLOWED_GLOBALS = {
    ("functools", "partial"), ("operator", "itemgetter"), ("builtins", "getattr"), ("__builtin__", "getattr"),
    ("cloudpickle.cloudpickle", "_make_function"), ("cloudpickle.cloudpickle", "_make_cell"),
    ("cloudpickle.cloudpickle", "_make_empty_cell"), ("cloudpickle.cloudpickle", "_builtin_type"),
    ("cloudpickle.cloudpickle", "_function_setstate"), ("cloudpickle.cloudpickle", "_make_skeleton_class"),
    ("cloudpickle.cloudpickle", "_class_setstate"),
}
# plain builtins (types and harmless functions) a pickle may name
ALLOWED_BUILTINS = {"bytes", "bytearray", "tuple", "set", "frozenset", "list", "dict", "int", "float", "complex",
                    "bool", "str", "unicode", "long", "slice", "range", "object", "type", "print", "reduce", "NoneType"}


@dataclass
class PickleReport:
    path: Path
    problems: list[str] = field(default_factory=list)
    n_globals: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems


def _allowed(module: str, name: str) -> bool:
    if (module, name) in ALLOWED_GLOBALS:
        return True
    if module in ("builtins", "__builtin__"):
        return name in ALLOWED_BUILTINS
    return any(module == prefix.rstrip(".") or module.startswith(prefix.rstrip(".") + ".")
               for prefix in ALLOWED_MODULES)


def scan_pickle(path: str | Path) -> PickleReport:
    """Every global ``path`` would import, checked against the policy above; nothing is unpickled."""
    from picklescan.scanner import scan_file_path

    path = Path(path)
    report = PickleReport(path)
    result = scan_file_path(str(path))
    if result.scan_err:
        report.problems.append(f"{path.name}: could not be scanned (not a pickle, or corrupt)")
        return report
    report.n_globals = len(result.globals)
    for g in result.globals:
        if not _allowed(g.module, g.name):
            report.problems.append(f"{path.name}: imports {g.module}.{g.name} "
                                   f"(picklescan: {g.safety.name.lower()}), which no Husky AI learner needs")
    return report
