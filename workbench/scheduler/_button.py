"""The promote button: promotion from the notebook UI, with the refusal shown in place."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets

from workbench.errors import WorkbenchError
from workbench.scheduler._promote import promote


def promote_button(notebook: str | Path, session: int, schedule: str = "candle:5m") -> widgets.VBox:
    """A small form (notebook, session, schedule) and a Promote button; the result, or the
    reason the promotion was refused, appears under it."""
    path = widgets.Text(str(notebook), description="notebook", layout=widgets.Layout(width="60%"))
    number = widgets.IntText(int(session), description="session")
    when = widgets.Text(schedule, description="schedule", placeholder="candle:5m or */5 * * * *")
    button = widgets.Button(
        description="Promote",
        button_style="warning",
        icon="rocket",
        tooltip="freeze this notebook and run it on the schedule",
    )
    result = widgets.HTML()

    def clicked(_: widgets.Button) -> None:
        try:
            live = promote(path.value, number.value, when.value)
        except WorkbenchError as exc:
            result.value = (
                f"<span class='wb-refused' style='color:#b00020'>not promoted: {html.escape(str(exc))}</span>"
            )
            return
        result.value = (
            f"<span class='wb-promoted'>session #{live.session_id}: {html.escape(Path(live.source_path).name)} "
            f"v{live.version} is live on {html.escape(live.schedule)}; next run "
            f"{live.next_run_at:%Y-%m-%d %H:%M:%S} UTC</span>"
        )

    button.on_click(clicked)
    return widgets.VBox([path, widgets.HBox([number, when, button]), result])
