"""`effnet export-model`: a spec's network (with a checkpoint's weights) as ONNX, TorchScript, or a timm or
torchvision state dict, run once against the torch model before it is written."""

from __future__ import annotations

from pathlib import Path

import typer

from effnet.cli.common import clean_input_errors, console, emit_json, literal, progress_console
from effnet.nas.choices import EXPORT_FORMATS, WEIGHTS


@clean_input_errors({"format": "--format", "which": "--weights"})
def export_model(
    spec_path: Path = typer.Argument(
        ..., metavar="SPEC.yaml", help="The network spec (a family member, a trained spec)."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="Weights: an effnet training checkpoint (its resolution and classes; a training "
        "run directory means its best.pt) or a state dict of effnet, timm or torchvision. "
        "Default: the seeded initialisation.",
    ),
    weights: str = typer.Option(
        "best",
        "--weights",
        help="A training checkpoint's weights: best (those that scored "
        "best on validation, as the checkpoint records), ema or raw.",
        autocompletion=lambda: list(WEIGHTS),
    ),
    format: str = typer.Option(
        "onnx",
        "--format",
        help=f"{' | '.join(EXPORT_FORMATS)}: ONNX and TorchScript with "
        "BatchNorm folded and a dynamic batch axis; timm and "
        "torchvision state dicts for their "
        "load_state_dict(strict=True).",
        autocompletion=lambda: list(EXPORT_FORMATS),
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="The file to write: a new file, or with --force one to replace (never a link, a directory, a "
        "device, a read-only file, an input or a file of an effnet run directory).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace the --out file where it exists."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the initialisation (without --checkpoint) and of the check's images."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a summary."),
) -> None:
    """Export a network for deployment, then run the exported file (onnxruntime, torch.jit, or read back) on batches
    of 1 and 3 against the torch model: max_abs_diff within 1e-4 of the largest logit, or exit 1 and nothing written.

    ONNX and TorchScript files carry a training checkpoint's class names, input transform, resolution, spec name and
    weights as metadata (effnet.classes, effnet.transform, ...), which effnet predict reads.
    """
    from effnet.nas.export import RELATIVE_TOLERANCE
    from effnet.nas.export import export_model as export
    from effnet.nas.net.spec_file import load_spec
    from effnet.nas.targets import check_output_file
    from effnet.nas.training.weights import weights_path

    inputs = (spec_path, None if checkpoint is None else weights_path(checkpoint))
    check_output_file(out, inputs, force)  # before any work: nothing of the user's is replaced
    result = export(load_spec(spec_path), out, format, checkpoint, seed, weights, force)
    data = result.as_dict()
    if as_json:
        emit_json(data)
    else:
        console.print(
            f"{literal(result.spec.name)} @ {result.spec.resolution} px, {result.spec.num_classes} classes, "
            f"weights: {literal(result.weights)} -> {format}"
            + (" (BatchNorm folded)" if data["batch_norm_folded"] else "")
        )
        console.print(
            f"max_abs_diff {result.max_abs_diff:.3g} against the torch model at batch 1 and 3 "
            f"(largest logit {result.output_scale:.3g}; tolerance {result.tolerance:.3g} = "
            f"{RELATIVE_TOLERANCE:g} of it)"
        )
    if not result.within_tolerance:
        progress_console.print(
            f"[red]error:[/] the exported {format} disagrees with the torch model beyond the "
            f"tolerance; nothing written to {literal(out)}"
        )
        raise typer.Exit(1)
    if not as_json:
        console.print(f"written: {literal(result.path)}")
