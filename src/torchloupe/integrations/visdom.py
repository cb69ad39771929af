"""Weight learning live in Visdom: ``WeightTracker(model, sinks=[VisdomSink()])``.

Needs the ``visdom`` extra (``pip install 'torchloupe[visdom]'``) and a running server
(``python -m visdom.server``). Windows in environment ``env`` (ids fixed, so a rerun replaces
them):

- ``weights_norm`` — ‖W‖ per tracked weight over steps (log y);
- ``weights_update_ratio`` — ‖ΔW‖/‖W_prev‖ per tracked weight over steps (log y);
- ``weights_histogram`` — the head's value histogram over time (heat map, step x bin);
- ``weights_images`` — class templates (or first-layer kernels) at the latest snapshot;
- ``weights_similarity`` — cosine similarity between class weight vectors at the latest snapshot.

A server that cannot be reached gives one warning and the sink turns itself off; training
goes on.
"""

from __future__ import annotations

import logging
import math
import warnings

from ..errors import require

__all__ = ["VisdomSink"]

WINDOWS = ("weights_norm", "weights_update_ratio", "weights_histogram", "weights_images", "weights_similarity")


class VisdomSink:
    """Push each record of a :class:`~torchloupe.weights.WeightTracker` to a Visdom server.

    ``names``: tracked tensors to plot (default: weights with 2+ dims, at most ``max_lines``).
    ``images``: ``"auto"`` / ``"templates"`` / ``"kernels"`` / ``None``.
    """

    def __init__(
        self,
        server: str = "http://127.0.0.1",
        port: int = 8097,
        env: str = "torchloupe",
        *,
        names: list[str] | None = None,
        max_lines: int = 10,
        images: str | None = "auto",
    ):
        visdom = require("visdom", "visdom")
        self.server, self.port, self.env = server, port, env
        self.names = names
        self.max_lines = max_lines
        self.images = images
        self.enabled = True
        self._hist_rows: list[list[float]] = []
        self._hist_steps: list[int] = []
        self._hist_name: str | None = None
        self._started: set[str] = set()
        # The client logs (through a deprecated logger.warn) that it runs without its incoming
        # socket, which is what we ask for: keep that note out of the user's training log.
        vlog = logging.getLogger("visdom")
        level = vlog.level
        try:
            vlog.setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.viz = visdom.Visdom(
                    server=server, port=port, env=env, use_incoming_socket=False, raise_exceptions=True
                )
                ok = self.viz.check_connection()
        except (ConnectionError, OSError) as exc:  # unreachable server (requests errors are OSErrors)
            self._disable(f"{type(exc).__name__}: {exc}")
            return
        finally:
            vlog.setLevel(level)
        if not ok:
            self._disable("no answer")

    def _disable(self, why: str) -> None:
        if self.enabled:
            warnings.warn(
                f"Visdom server {self.server}:{self.port} is not reachable ({why}); weight learning is not "
                f"sent to Visdom and training goes on. Start one with: python -m visdom.server -port {self.port}",
                RuntimeWarning,
                stacklevel=3,
            )
        self.enabled = False

    # -- the sink protocol --------------------------------------------------------------------
    def on_record(self, tracker, record) -> None:
        if not self.enabled:
            return
        try:
            self._send(tracker, record)
        except (ConnectionError, OSError) as exc:
            self._disable(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        pass

    # -- drawing ------------------------------------------------------------------------------
    def _lines(self, tracker, record) -> list[int]:
        if self.names is not None:
            return [record.names.index(n) for n in self.names]
        idx = [j for j, n in enumerate(record.names) if len(tracker.shapes.get(n, ())) >= 2] or list(
            range(len(record.names))
        )
        if len(idx) > self.max_lines:
            idx = [idx[round(i * (len(idx) - 1) / (self.max_lines - 1))] for i in range(self.max_lines)]
        return idx

    def _append(self, win: str, step: int, values: list[float], legend: list[str], title: str) -> None:
        import numpy as np

        y = np.array([values], dtype=np.float64)
        x = np.full_like(y, float(step))
        if win not in self._started:
            opts = dict(title=title, legend=legend, xlabel="step", ytype="log", showlegend=True)
            self.viz.line(Y=y, X=x, win=win, env=self.env, opts=opts)
            self._started.add(win)
        else:
            self.viz.line(Y=y, X=x, win=win, env=self.env, update="append")

    def _send(self, tracker, record) -> None:
        import numpy as np

        idx = self._lines(tracker, record)
        legend = [record.names[j] for j in idx]
        self._append("weights_norm", record.step, [float(record.stats[j, 0]) for j in idx], legend, "weight norm ‖W‖")
        ratios = [float(record.stats[j, 5]) for j in idx]
        if all(math.isfinite(r) for r in ratios):
            self._append("weights_update_ratio", record.step, ratios, legend, "update ratio ‖ΔW‖/‖W‖")
        # histogram heat map of the head (or the last plotted tensor), rows = bins, columns = steps
        if self._hist_name is None:
            heads = [n for n in tracker.snapshot_names if n.endswith("weight") and len(tracker.shapes[n]) == 2]
            self._hist_name = heads[-1] if heads else record.names[idx[-1]]
        j = record.names.index(self._hist_name) if self._hist_name in record.names else idx[-1]
        self._hist_rows.append(record.hist[j].double().tolist())
        self._hist_steps.append(record.step)
        lo, hi = (float(v) for v in record.hist_range[j])
        heat = np.log1p(np.array(self._hist_rows).T)
        self.viz.heatmap(
            X=heat,
            win="weights_histogram",
            env=self.env,
            opts=dict(
                title=f"{self._hist_name}: log(1+count), latest range [{lo:.3g}, {hi:.3g}]",
                columnnames=[str(s) for s in self._hist_steps],
                xlabel="step",
                ylabel="bin",
                colormap="Viridis",
            ),
        )
        if record.snapshot is None:
            return
        h = tracker.record_history(record)
        if self.images is not None:
            from ..render.weight_learning import frame_images

            try:
                frames, kind = frame_images(h, self.images)
            except ValueError:
                frames = None
            if frames:
                self.viz.image(
                    frames[0].numpy(), win="weights_images", env=self.env,
                    opts=dict(title=f"{kind} at step {record.step}", caption=f"step {record.step}"),
                )
        from ..weights.learned import class_similarity

        sim = class_similarity(h)
        if sim is not None:
            self.viz.heatmap(
                X=sim[0].numpy(), win="weights_similarity", env=self.env,
                opts=dict(title=f"class cosine similarity at step {record.step}", xmin=-1.0, xmax=1.0,
                          colormap="RdBu"),
            )
