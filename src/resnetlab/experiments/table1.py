"""Table 1: parameters and multiply-adds of ResNet-18..152, counted, beside the paper's FLOPs."""

from __future__ import annotations

from resnetlab.models import count_macs, count_parameters, create_model

# Table 1's last row, multiply-adds (x10^9), as printed in the paper.
PAPER_GMACS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def table1() -> list[dict]:
    rows = []
    for name, paper in PAPER_GMACS.items():
        for style in ("paper", "torchvision"):
            model = create_model(name, style=style)
            macs = count_macs(model, 224)
            rows.append({
                "name": name, "style": style,
                "params": count_parameters(model), "gmacs": macs / 1e9, "paper_gmacs": paper,
                "relative_difference": macs / 1e9 / paper - 1,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| network | style | params | mult-adds (ours) | FLOPs (paper) | difference |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['style']} | {r['params'] / 1e6:.2f}M | {r['gmacs']:.2f}×10^9 | "
                     f"{r['paper_gmacs']}×10^9 | {r['relative_difference']:+.1%} |")
    return "\n".join(lines)
