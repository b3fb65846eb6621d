"""``osteoai web``: the browser entry point, on top of the core and the MRML bridge (like the CLI).

- ``studies`` / ``reviews``: result folders under ``--data`` and the reviews stored beside them;
- ``upload_check`` / ``uploads`` / ``worker``: the patient upload page's checks, upload area and
  background screening queue;
- ``accounts``: reviewer accounts (hashed passwords) and login sessions;
- ``review_session``: one study's scene in trame-slicer's MRML scene, ROI edits and Recompute;
- ``plots`` / ``pdf``: BMD plot with the ACR bands, calibration fit, PDF summary (matplotlib);
- ``pages`` / ``http`` / ``app``: plain HTML pages, their aiohttp routes, and the trame-slicer review app.

Only ``app`` and ``review_session`` import trame / slicer; the rest runs without them (tests of the
upload checks need neither).
"""
