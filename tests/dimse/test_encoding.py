"""The hot-path encoders write exactly what pynetdicom and pydicom would."""

from __future__ import annotations

import pytest
from pynetdicom.dsutils import encode


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"])
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.826.0.1.3680043.10.1474.9.12345"])
def test_file_meta_as_pynetdicom_writes_it(syntax, instance) -> None:
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    from pacsdash.dimse.encoding import file_meta

    expected = encode_file_meta(create_file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=instance, transfer_syntax=syntax))
    assert file_meta("1.2.840.10008.5.1.4.1.1.2", instance, syntax) == expected


@pytest.mark.parametrize("status, comment", [(0x0000, None), (0xC000, "bad value x"), (0x0124, "odd")])
@pytest.mark.parametrize("instance", ["1.2.3.4", "1.2.826.0.1.3680043.10.1474.9.12345"])
def test_store_response_as_pynetdicom_writes_it(status, comment, instance) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from pacsdash.dimse.encoding import store_response

    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 513
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    primitive.AffectedSOPInstanceUID = instance
    primitive.Status = status
    primitive.ErrorComment = comment
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    expected = encode(message.command_set, True, True)
    assert store_response(513, "1.2.840.10008.5.1.4.1.1.4", instance, status, comment) == expected


def test_text_the_codec_cannot_encode_becomes_a_question_mark():
    from pacsdash.dimse.encoding import text

    assert text("LO", "UID '1.2.\u00e9'") == b"UID '1.2.?' "
    assert text("UI", "1.2.3") == b"1.2.3\0"
