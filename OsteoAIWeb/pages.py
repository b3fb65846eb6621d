"""Plain HTML pages of the upload side and the login (no JavaScript needed; the progress page reloads
itself). Titles are fixed strings: no page ever names the patient or the uploaded file."""

from __future__ import annotations

from html import escape

from OsteoAILib.results import Results

from .explain import explain

STYLE = """body{font-family:system-ui,sans-serif;max-width:860px;margin:2em auto;padding:0 1em;color:#202124}
h1{font-size:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f1f3f4}.error{color:#b3261e;font-weight:bold}.limits{background:#fef7e0;padding:.5em 1em}
progress{width:100%;height:1.4em}img{max-width:100%}.keys img{width:48%;margin:1%}"""


def page(title: str, body: str, refresh: float | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh:g}">' if refresh else ""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>{meta}"
        f"<meta name='referrer' content='no-referrer'><meta name='robots' content='noindex'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )


def upload_form(max_mb: int, days: float, error: str | None = None) -> str:
    err = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return page(
        "OsteoAI: screen a CT",
        f"""
<h1>Bone density from your CT scan</h1>{err}
<p>Upload a chest or abdomen CT: a <b>zip of the DICOM folder</b>, or a <b>NIfTI</b> (.nii, .nii.gz) or
<b>NRRD</b> (.nrrd) file, at most {max_mb} MB. You get a private link to the result; the scan and the result
are deleted after {days:g} days.</p>
<form method="post" action="/upload" enctype="multipart/form-data">
<input type="file" name="scan" id="scan" required> <button type="submit" id="send">Upload and screen</button>
</form>
<p class="limits">Research software, not a medical device: the result is not a diagnosis.</p>""",
    )


def status_page(status: dict, ahead: int | None) -> str:
    state = status.get("state")
    if state == "failed":
        return page(
            "OsteoAI: screening",
            f"<h1>The scan could not be screened</h1>"
            f'<p class="error" id="error">{escape(status.get("message", ""))}</p>'
            '<p><a href="/upload">Upload another scan</a></p>',
        )
    where = (f"{ahead} upload(s) ahead of yours" if ahead else "being screened") if ahead is not None else ""
    pct = 100 * float(status.get("progress", 0))
    return page(
        "OsteoAI: screening",
        f"""<h1>Screening your scan</h1>
<progress id="progress" max="100" value="{pct:.0f}"></progress>
<p id="state">{escape(state or "")}: {escape(status.get("message", ""))} ({pct:.0f}%) {escape(where)}</p>
<p>This page reloads itself. Keep the link: it is the only way to the result.</p>""",
        refresh=1,
    )


def result_page(results: Results, base: str, key_names: list[tuple[str, str]]) -> str:
    text = explain(results)
    rows = "".join(
        f"<tr data-level='{escape(lv.level)}'><td style='text-align:left'>{escape(lv.level)}</td>"
        f"<td class='vbmd'>{'' if lv.vbmd_mg_cm3 is None else f'{lv.vbmd_mg_cm3:.1f}'}</td>"
        f"<td>{'' if not lv.vbmd_ci95 else f'{lv.vbmd_ci95[0]:.1f} to {lv.vbmd_ci95[1]:.1f}'}</td>"
        f"<td>{'yes' if lv.used_for_diagnosis else 'no'}</td>"
        f"<td style='text-align:left'>{escape(', '.join(f.split(':')[0] for f in lv.qc))}</td></tr>"
        for lv in results.levels
    )
    d = results.diagnosis
    vb = "" if d.vbmd_mg_cm3 is None else f"{d.vbmd_mg_cm3:.1f}"
    keys = "".join(
        f"<img src='{base}/key/{escape(n)}.png' alt='{escape(t)}' title='{escape(t)}'>" for n, t in key_names
    )
    li = "".join
    return page(
        "OsteoAI: result",
        f"""<h1>Your result</h1>
<p id="headline"><b>{escape(text["headline"])}</b></p>
{li(f"<p>{escape(p)}</p>" for p in text["detail"])}
<p>Diagnostic vBMD: <span id="diagnosis-vbmd">{vb}</span> mg/cm³,
category <span id="diagnosis-category">{escape(d.category or "none")}</span>.</p>
<img src="{base}/bmd.png" alt="vBMD per level with the ACR bands">
<table id="levels"><tr><th>level</th><th>vBMD mg/cm³</th><th>95% interval</th><th>used</th><th>notes</th></tr>
{rows}</table>
<h2>Scan quality notes</h2><ul id="notes">{li(f"<li>{escape(n)}</li>" for n in text["notes"]) or "<li>none</li>"}</ul>
<h2>Key images</h2><div class="keys">{keys}</div>
<p><a id="pdf" href="{base}/summary.pdf">Download the PDF summary</a></p>
<div class="limits"><h2>Limits</h2>{li(f"<p>{escape(p)}</p>" for p in text["limits"])}</div>""",
    )


def login_page(error: str | None = None) -> str:
    err = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return page(
        "OsteoAI: reviewer login",
        f"""<h1>Reviewer login</h1>{err}
<form method="post" action="/login"><p><label>Name <input name="name" id="name" autocomplete="username"></label></p>
<p><label>Password <input name="password" id="password" type="password" autocomplete="current-password"></label></p>
<button type="submit" id="login">Log in</button></form>""",
    )


def not_found() -> str:
    return page("OsteoAI", "<h1>Not found</h1><p>This link is wrong, or its result was deleted.</p>")
