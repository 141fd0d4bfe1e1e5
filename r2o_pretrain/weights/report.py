"""The load report: which backbone tensors came from which file, and which did not — never silent."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LoadReport:
    source: str
    source_format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model tensors the file did not provide
    unexpected: list[str] = field(default_factory=list)  # file tensors the model has no place for
    mismatched: list[str] = field(default_factory=list)  # same name, different shape

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [
            f"r2o weights: loaded {len(self.loaded)}/{len(self.loaded) + len(self.missing) + len(self.mismatched)} "
            f"backbone tensors from {self.source} ({self.source_format})"
        ]
        for title, names in (
            ("NOT loaded (missing from the file)", self.missing),
            ("NOT loaded (shape mismatch)", self.mismatched),
            ("unused (in the file, not in the model)", self.unexpected),
        ):
            if names:
                shown = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")
                lines.append(f"  {title}: {len(names)}: {shown}")
        if self.complete:
            lines.append("  every backbone tensor was loaded")
        return "\n".join(lines)


def compare_state(
    model_state: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], source: str, source_format: str
) -> LoadReport:
    """What ``model.load_state_dict(weights)`` would do, tensor by tensor (same key space)."""
    report = LoadReport(source, source_format)
    for key, value in model_state.items():
        if key not in weights:
            report.missing.append(key)
        elif tuple(weights[key].shape) != tuple(value.shape):
            report.mismatched.append(f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}")
        else:
            report.loaded.append(key)
    report.unexpected = [k for k in weights if k not in model_state]
    return report
