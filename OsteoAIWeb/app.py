"""The review app: a trame-slicer application over the MRML scene of a study (the nodes the Slicer panels
show), with the study list, the result panels, ROI edits, Recompute, accept/reject and teaching.

trame keeps one state per server process: every browser connected to the same ``osteoai web`` sees
the same study. Reviews are saved under the name the reviewer logged in with.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from pathlib import Path

from OsteoAILib.results import ACR_NORMAL_ABOVE, ACR_OSTEOPOROSIS_BELOW, Results

from . import plots, reviews, studies

log = logging.getLogger("osteoai.web")
STEP_MM = 2.0
ACR_TEXT = (
    f"ACR categories (QCT, mean vBMD of two lumbar levels, mg/cm³ hydroxyapatite): above "
    f"{ACR_NORMAL_ABOVE:g} normal; {ACR_OSTEOPOROSIS_BELOW:g} to {ACR_NORMAL_ABOVE:g} osteopenia; below "
    f"{ACR_OSTEOPOROSIS_BELOW:g} osteoporosis. Trabecular bone, measured in the ROI, turns over faster "
    "than the cortical shell and shows bone loss first; the shell is left out of the ROI because its "
    "density and partial volume would hide that loss."
)


def _offscreen() -> None:
    # No display on a server: VTK's EGL window renders offscreen with Mesa (or a GPU driver).
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _warm_up() -> None:
    """Imports the first study view and the first Recompute would pay for (matplotlib and its fonts, the review
    session with the MRML bridge and calibration, the re-measure and the AI vBMD estimator): ~1.5 s each here,
    paid at start instead."""
    from OsteoAILib import bmd, remeasure  # noqa: F401

    from . import review_session  # noqa: F401

    fig = plots._figure()
    fig.subplots().set_title("warm-up")
    plots._png(fig)  # matplotlib's font set-up, paid once

    try:
        from OsteoAILib.vbmd_model import infer  # noqa: F401
    except ImportError:  # without torch the estimator falls back to calibrated HU, as in the pipeline
        pass


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def level_rows(results: Results) -> list[dict]:
    def f(x):
        return None if x is None else round(float(x), 1)

    return [{"level": lv.level, "vbmd": f(lv.vbmd_mg_cm3), "lo": f(lv.vbmd_ci95[0]) if lv.vbmd_ci95 else None,
             "hi": f(lv.vbmd_ci95[1]) if lv.vbmd_ci95 else None, "hu": f(lv.roi_mean_hu),
             "volume": f(lv.roi_volume_mm3), "used": bool(lv.used_for_diagnosis),
             "qc": ", ".join(q.split(":")[0] for q in lv.qc)} for lv in results.levels]  # fmt: skip


def diagnosis_text(results: Results) -> str:
    d = results.diagnosis
    if d.vbmd_mg_cm3 is None:
        return "no diagnosis: " + (d.criteria or "")
    return f"{d.vbmd_mg_cm3:.1f} mg/cm³, {d.category} (levels {', '.join(d.levels)})"


class ReviewApp:
    def __init__(self, server, data: Path, site=None):
        _offscreen()
        import slicer
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.server, self.data, self.site = server, Path(data), site
        self.state, self.ctrl = server.state, server.controller
        self.slicer_app = SlicerApp()
        for cls in (slicer.vtkSlicerTablesLogic, slicer.vtkSlicerTextsLogic, slicer.vtkSlicerPlotsLogic):
            self.slicer_app.register_module_logic(cls())  # the scene's tables, results text and plot
        # One quality for moving and still pictures: trame-rca otherwise renders every change twice (a coarse
        # picture, then a fine one), and a CPU render of a 512 x 512 CT's views takes tenths of a second.
        register_rca_factories(self.slicer_app.view_manager, server, rca_encoder="jpeg", interactive_quality=90)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, server)
        self.layout_manager.register_layout_dict(LayoutManager.default_grid_configuration())
        self.layout_manager.set_layout("Quad View")
        self.session = None
        self.studies: dict[str, studies.Study] = {}
        self._init_state()
        for name in (
            "open_study",
            "close_study",
            "refresh",
            "show_3d",
            "move_box",
            "resize_box",
            "erase_roi",
            "recompute",
            "accept",
            "reject",
            "teach",
        ):
            self.ctrl[name] = getattr(self, name)
        self._build_ui()
        self.refresh()
        _warm_up()

    def _init_state(self):
        s = self.state
        s.trame__title = "OsteoAI review"
        s.update({"studies": [], "study_id": "", "levels": [], "diagnosis": "", "bmd_png": "", "cal_png": "",
                  "qc_flags": [], "key_images": [], "box_levels": [], "edit_level": None, "edits": [],
                  "reviewed_levels": [], "reviewed_diagnosis": "", "review_comment": "", "message": "",
                  "reviews": [], "teaching": "", "teach_level": None, "reviewer": "", "busy": False,
                  "open_seconds": None, "recompute_seconds": None, "tab": "results"})  # fmt: skip

    # --- actions --------------------------------------------------------------------------------
    def refresh(self):
        self.studies = studies.find_studies(self.data)
        self.state.studies = [studies.summary(st) for st in self.studies.values()]
        self.state.reviewer = (self.site.ws_user if self.site else None) or ""

    @contextlib.contextmanager
    def _numbers_first(self):
        """The views render after the numbers have gone out: a view renders on the event loop (a few tenths of a
        second each on a CPU renderer), and renders asked for during an action would run ahead of the state push
        that the action's return queues."""
        views = list(self.slicer_app.view_manager.get_views())
        for view in views:
            view.set_render_blocked(True)

        def release():
            for view in views:
                view.set_render_blocked(False)  # each view then renders once

        try:
            yield
        finally:
            try:
                asyncio.get_running_loop().call_later(0.05, release)
            except RuntimeError:  # called outside the server (tests): render now
                release()

    def open_study(self, study_id: str):
        with self._numbers_first():
            self._open_study(study_id)

    def _open_study(self, study_id: str):
        from .review_session import ReviewSession

        t0 = time.perf_counter()
        study = self.studies.get(study_id)
        if study is None or not study.has_scene:
            self.state.message = "this study has no scene.mrml (run osteoai run --scene): results only"
            return
        self._close_study()
        drawn = {}

        def draw_plots():  # while the CT is inflated on another thread
            auto = Results.from_dict(json.loads((study.dir / "results.json").read_text()))
            drawn["bmd"], drawn["cal"] = plots.bmd_png(auto), plots.calibration_png(auto)

        self.session = ReviewSession(self.slicer_app.scene, study.dir, meanwhile=draw_plots)
        ses = self.session
        dm = self.slicer_app.display_manager
        dm.show_volume_in_slice_background(ses.volume)
        for view in self.slicer_app.view_manager.get_views():
            view.fit_view_to_content() if hasattr(view, "get_slice_value") else view.reset_camera()
        self._show_results(ses.auto, drawn.get("bmd"))
        s = self.state
        s.edit_level = s.teach_level = (ses.auto.diagnosis.levels or ses.levels() or [None])[0]
        if s.edit_level in ses.boxes:  # the slice views open through the diagnostic level's ROI
            from OsteoAILib import mrml

            self._jump_to(mrml._matrix_to_numpy(ses.boxes[s.edit_level].GetObjectToWorldMatrix())[:3, 3])
        s.study_id = study_id
        s.tab = "results"
        s.qc_flags = list(ses.auto.qc)
        s.key_images = [
            {"src": _data_url((study.dir / k["file"]).read_bytes()), "title": k.get("title", "")}
            for k in ses.auto.key_images
            if (study.dir / k.get("file", "")).is_file()
        ]
        s.cal_png = _data_url(drawn.get("cal") or plots.calibration_png(ses.auto))
        s.box_levels = ses.levels()
        s.edits, s.reviewed_levels, s.reviewed_diagnosis, s.message, s.teaching = [], [], "", "", ""
        s.reviews = [
            f"{r['time']} {r['reviewer']}: {r['decision']} {r.get('comment', '')}"
            for r in reviews.reviews_of(study.dir)
        ]
        s.open_seconds = round(time.perf_counter() - t0, 3)
        log.info("study %s opened in %.2f s", study_id, s.open_seconds)

    def show_3d(self):
        """The spine as surfaces in the 3D view. On demand: marching cubes over every vertebra take ~1.3 s on the
        default phantom (its segmentation stored cropped), most of the 2 s a study view may take."""
        if self.session is None or self.session.vertebrae is None:
            return
        t0 = time.perf_counter()
        self.session.vertebrae.CreateClosedSurfaceRepresentation()
        for view in self.slicer_app.view_manager.get_threed_views():
            view.reset_camera()
        self.state.message = f"3D surfaces built in {time.perf_counter() - t0:.1f} s"

    def _show_results(self, results: Results, bmd_png: bytes | None = None):
        self.state.levels = level_rows(results)
        self.state.diagnosis = diagnosis_text(results)
        self.state.bmd_png = _data_url(bmd_png or plots.bmd_png(results))

    def close_study(self):
        with self._numbers_first():
            self._close_study()

    def _close_study(self):
        if self.session is not None:
            self.session.close()
            self.session = None
        self.state.update({"study_id": "", "levels": [], "open_seconds": None, "reviewed_diagnosis": ""})

    def _edit(self, fn, *args):
        if self.session is None or not self.state.edit_level:
            return
        try:
            fn(self.state.edit_level, *args)
        except Exception as e:
            self.state.message = f"edit failed: {e}"
            return
        self.state.edits = list(self.session.edits)

    def move_box(self, axis: str, mm: float):
        self._edit(self.session.move_box if self.session else None, axis, float(mm))

    def resize_box(self, axis: str, mm: float):
        self._edit(self.session.resize_box if self.session else None, axis, float(mm))

    def erase_roi(self):
        axial = [v for v in self.slicer_app.view_manager.get_slice_views() if v.get_orientation() == "Axial"]
        if self.session is None or not axial:
            return
        self._edit(self.session.erase_axial, axial[0].get_slice_value())

    def recompute(self):
        if self.session is None:
            return
        with self._numbers_first():
            self._recompute()

    def _recompute(self):
        t0 = time.perf_counter()
        results = self.session.recompute()
        self.state.reviewed_levels = level_rows(results)
        self.state.reviewed_diagnosis = diagnosis_text(results)
        self.state.bmd_png = _data_url(plots.bmd_png(results))
        self.state.recompute_seconds = round(time.perf_counter() - t0, 3)
        self.state.message = f"recomputed in {self.state.recompute_seconds:.2f} s"

    def _review(self, decision: str):
        if self.session is None:
            return
        reviewer = (self.site.ws_user if self.site else None) or "reviewer"
        ses = self.session
        folder = reviews.save_review(
            ses.dir,
            reviewer,
            decision,
            self.state.review_comment or "",
            results=ses.current.to_dict() if ses.recomputed else None,
            edits=ses.edits,
        )
        log.info("study %s %s by %s", self.state.study_id, decision, reviewer)
        self.state.message = f"{decision}: saved beside the results ({folder.parent.name}/{folder.name})"
        self.state.reviews = [
            f"{r['time']} {r['reviewer']}: {r['decision']} {r.get('comment', '')}" for r in reviews.reviews_of(ses.dir)
        ]
        self.refresh()

    def accept(self):
        self._review("accepted")

    def reject(self):
        self._review("rejected")

    def teach(self):
        if self.session is None or not self.state.teach_level:
            return
        t = self.session.teaching(self.state.teach_level)
        if t["trabecular_hu"] is None:
            self.state.teaching = f"{t['level']}: no trabecular ROI"
            return
        cort = "n/a" if t["cortical_hu"] is None else f"{t['cortical_hu']:.0f} HU"
        self.state.teaching = (
            f"{t['level']}: trabecular ROI mean {t['trabecular_hu']:.0f} HU, cortical shell median {cort}"
        )
        self._jump_to(t["roi_center_ras"])

    def _jump_to(self, ras):
        """All three slice views through the point ``ras``."""
        for view in self.slicer_app.view_manager.get_slice_views():
            axis = {"Axial": 2, "Sagittal": 0, "Coronal": 1}.get(view.get_orientation())
            if axis is not None:
                view.set_slice_value(float(ras[axis]))

    # --- UI -------------------------------------------------------------------------------------
    def _build_ui(self):
        from trame.widgets import client, html
        from trame.widgets import vuetify3 as v3
        from trame_vuetify.ui.vuetify3 import SinglePageLayout

        with SinglePageLayout(self.server, full_height=True) as self.ui:
            self.ui.title.set_text("OsteoAI review")
            with self.ui.toolbar:
                v3.VSpacer()
                v3.VBtn("Studies", id="to-list", click=self.close_study, v_show="study_id")
                html.Span("{{ reviewer }}", classes="mx-3")
                html.A("Log out", href="/logout", classes="mr-4")
            with self.ui.content:
                # each page load lists the studies again (uploads finish while the server runs) and shows the
                # name this connection logged in with
                client.ClientTriggers(mounted=self.refresh)
                self._study_list(html, v3)
                with html.Div(v_show="study_id", classes="d-flex", style="height: calc(100vh - 64px);"):
                    with html.Div(style="flex: 1 1 58%; position: relative; min-width: 0;"):
                        self.layout_manager.initialize_layout_grid(self.ui)
                    with html.Div(style="flex: 0 0 42%; overflow-y: auto;", classes="pa-2"):
                        self._panels(html, v3)

    def _study_list(self, html, v3):
        with v3.VContainer(v_if="!study_id", fluid=True):
            with html.Div(classes="d-flex align-center mb-2"):
                html.H2("Studies", classes="mr-4")
                v3.VBtn("Refresh", size="small", click=self.refresh, id="refresh")
            html.P("{{ message }}", v_if="message", id="list-message")
            with v3.VTable(density="compact", id="study-list"):
                with html.Thead(), html.Tr():
                    for h in ("study", "vBMD mg/cm³", "category", "levels", "QC flags", "review", "scene"):
                        html.Th(h)
                with html.Tbody():
                    with html.Tr(
                        v_for="s in studies",
                        key="s.id",
                        classes="study-row",
                        style="cursor: pointer;",
                        click=(self.open_study, "[s.id]"),
                    ):
                        for col in ("id", "vbmd", "category", "levels", "qc", "review"):
                            html.Td(f"{{{{ s.{col} }}}}")
                        html.Td("{{ s.scene ? 'yes' : 'no' }}")

    def _panels(self, html, v3):
        html.Div("Diagnosis: {{ diagnosis }}", id="diagnosis", classes="text-subtitle-1")
        html.Div("{{ message }}", id="message", classes="text-caption text-primary")
        with html.Div(classes="d-flex align-center"):
            html.Span("opened in {{ open_seconds }} s", id="open-seconds", classes="text-caption mr-2")
            v3.VBtn("Show the spine in 3D", size="small", click=self.show_3d, id="show-3d")
        with v3.VTabs(v_model="tab", density="compact"):
            for key, label in (
                ("results", "Results"),
                ("keys", "Key images"),
                ("review", "Review"),
                ("teaching", "Teaching"),
            ):
                v3.VTab(label, value=key, id=f"tab-{key}")
        with v3.VWindow(v_model="tab"):
            with v3.VWindowItem(value="results"):
                self._levels_table(html, v3, "levels", "bmd-table")
                html.Img(src=("bmd_png",), style="width: 100%;", id="bmd-plot")
                html.H4("Calibration fit")
                html.Img(src=("cal_png",), style="width: 100%;", id="calibration-plot")
                html.H4("QC flags")
                with html.Ul(id="qc-flags"):
                    html.Li("{{ f }}", v_for="f in qc_flags", key="f")
            with v3.VWindowItem(value="keys"):
                with html.Div(v_for="k in key_images", key="k.title"):
                    html.Img(src=("k.src",), style="width: 100%;")
                    html.P("{{ k.title }}", classes="text-caption")
            with v3.VWindowItem(value="review"):
                self._review_panel(html, v3)
            with v3.VWindowItem(value="teaching"):
                v3.VSelect(v_model="teach_level", items=("box_levels",), label="Level", density="compact")
                v3.VBtn("Cortical vs trabecular", click=self.teach, id="teach")
                html.P("{{ teaching }}", id="teaching", classes="mt-2")
                html.P(ACR_TEXT, classes="text-body-2")

    def _levels_table(self, html, v3, var, table_id):
        with v3.VTable(density="compact", id=table_id):
            with html.Thead(), html.Tr():
                for h in ("level", "vBMD", "95% interval", "ROI HU", "ROI mm³", "used", "QC"):
                    html.Th(h)
            with html.Tbody():
                with html.Tr(v_for=f"r in {var}", key="r.level"):
                    html.Td("{{ r.level }}")
                    html.Td("{{ r.vbmd }}", classes="vbmd")
                    html.Td("{{ r.lo }}–{{ r.hi }}")
                    html.Td("{{ r.hu }}")
                    html.Td("{{ r.volume }}", classes="roi-volume")
                    html.Td("{{ r.used ? 'yes' : '' }}")
                    html.Td("{{ r.qc }}")

    def _review_panel(self, html, v3):
        v3.VSelect(v_model="edit_level", items=("box_levels",), label="ROI box of level", density="compact")
        html.Div("Editing {{ edit_level }}", id="edit-level", classes="text-caption")
        for what, fn in (("Move", self.move_box), ("Size", self.resize_box)):
            with html.Div(classes="d-flex align-center my-1"):
                html.Span(what, style="width: 3em;")
                for axis in "RAS":
                    for sign in (-1, 1):
                        v3.VBtn(
                            f"{axis}{'+' if sign > 0 else '−'}",
                            size="small",
                            classes="mr-1",
                            id=f"{what.lower()}-{axis}{'p' if sign > 0 else 'm'}",
                            click=(fn, f"['{axis}', {sign * STEP_MM}]"),
                        )
        v3.VBtn("Erase ROI on the axial slice shown", size="small", click=self.erase_roi, id="erase", classes="my-1")
        with html.Ul(id="edits"):
            html.Li("{{ e }}", v_for="e in edits", key="e")
        v3.VBtn("Recompute", color="primary", click=self.recompute, id="recompute", classes="my-1")
        with html.Div(v_if="reviewed_diagnosis"):
            html.Div("Reviewed: {{ reviewed_diagnosis }}", id="reviewed-diagnosis")
            self._levels_table(html, v3, "reviewed_levels", "reviewed-table")
        v3.VTextarea(v_model="review_comment", label="Comment", rows=2, id="comment")
        v3.VBtn("Accept", color="success", click=self.accept, id="accept", classes="mr-2")
        v3.VBtn("Reject", color="error", click=self.reject, id="reject")
        html.H4("Reviews of this study", classes="mt-2")
        with html.Ul(id="reviews"):
            html.Li("{{ r }}", v_for="r in reviews", key="r")
