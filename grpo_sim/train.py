"""Entry point for launchers: the same run as ``grpo-sim train``.

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m grpo_sim.train \
        --config recipes/qwen2.5-3b/triviaqa_ps_grpo.yaml [--set key=value ...] [--output-dir DIR] [--resume auto]
    torchrun --nproc_per_node 2 -m grpo_sim.train --config ...
"""

from __future__ import annotations

import sys

import typer

from .cli import train_command


def _launcher_app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def main(
        config: str = typer.Option(..., "--config", "-c", help="YAML recipe"),
        set_: list[str] = typer.Option(None, "--set", help="override: key.path=value (repeatable)"),
        output_dir: str = typer.Option(None, "--output-dir", "-o"),
        resume: str = typer.Option(None, "--resume", help="'auto' or a checkpoint path"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        cache_dir: str = typer.Option(None, "--cache-dir"),
    ) -> None:
        from pathlib import Path

        finished = False
        try:
            train_command(
                Path(config),
                set_,
                Path(output_dir) if output_dir else None,
                resume,
                overwrite,
                Path(cache_dir) if cache_dir else None,
            )
            finished = True
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                # A clean exit waits for every rank (otherwise rank 0 can abort at exit under torchrun, seen
                # with LoRA on gloo); a failing rank must NOT wait, so that the launcher sees it exit and
                # stops the others instead of every rank hanging.
                if finished:
                    dist.barrier()
                dist.destroy_process_group()

    return app


def main() -> None:
    _launcher_app()(sys.argv[1:])


if __name__ == "__main__":
    main()
