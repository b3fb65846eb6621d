"""``osteoai serve-dicom``: a DICOM node that screens every CT study it receives and forwards the SEG, SR
and key images to a PACS.

Everything the node knows lives in its work folder, so a restart resumes where it stopped:

    incoming/<study>/     instances as they arrive (one file per SOP instance: a resend overwrites)
    jobs/<job>/input/     a study whose quiet period has passed, waiting for or under screening
    results/<job>/        the screening's outputs (results.json, labelmaps, dicom/), no patient images
    outbox/<job>/         DICOM outputs still to forward; a file leaves only once the destination took it
    failed/<job>/         studies that could not be screened, with reason.txt
    node.log, status.json

<study> and <job> are short hashes of the Study Instance UID: no patient identity in names or logs.
"""
