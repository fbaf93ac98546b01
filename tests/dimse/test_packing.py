"""One DIMSE message, as few P-DATA-TF PDUs as the peer accepts."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from pacsdash.dimse.packing import PDV_ITEM_OVERHEAD, pack
from tests.conftest import SCU_AET
from tests.factories import make_instance


def primitive(*datas: bytes) -> P_DATA:
    pdata = P_DATA()
    pdata.presentation_data_value_list.extend((1, data) for data in datas)
    return pdata


def items(primitives) -> list[list[bytes]]:
    return [[data for _, data in p.presentation_data_value_list] for p in primitives]


def test_pack_joins_small_pdvs_in_order():
    packed = list(pack([primitive(b"\x03cmd"), primitive(b"\x02data")], 16382))
    assert items(packed) == [[b"\x03cmd", b"\x02data"]]


def test_pack_respects_the_maximum_length():
    datas = [b"\x00" + bytes(90), b"\x00" + bytes(90), b"\x02" + bytes(10)]
    # room for exactly two items of 91 bytes, then the last one alone
    maximum = 2 * (PDV_ITEM_OVERHEAD + 91)
    packed = list(pack([primitive(d) for d in datas], maximum))
    assert items(packed) == [datas[:2], datas[2:]]
    for p in packed:
        assert sum(PDV_ITEM_OVERHEAD + len(d) for _, d in p.presentation_data_value_list) <= maximum
    # one byte less: no two fit together
    assert len(list(pack([primitive(d) for d in datas[:2]], maximum - 1))) == 2


def test_pack_without_a_limit_makes_one_pdu():
    datas = [b"\x01" + bytes(100_000), b"\x03" + bytes(10), b"\x02" + bytes(200_000)]
    assert items(pack([primitive(d) for d in datas], 0)) == [datas]


@pytest.mark.parametrize("maximum_pdu", [16382, 0])
def test_each_match_arrives_in_one_pdu(node, archive, maximum_pdu):
    """A pending C-FIND response (command + identifier) is one P-DATA-TF, and decodes."""
    for number in range(5):
        archive.store_bytes(make_instance(PatientID="PACK", StudyDescription=f"study {number}"))
    received: list[list[int]] = []

    def on_pdu(event):
        if isinstance(event.pdu, P_DATA_TF):
            received.append([item.data[0] for item in event.pdu.presentation_data_value_items])

    ae = AE(ae_title=SCU_AET)
    ae.maximum_pdu_size = maximum_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH", evt_handlers=[(evt.EVT_PDU_RECV, on_pdu)])
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = "PACK"
    identifier.StudyDescription = ""
    identifier.StudyInstanceUID = ""
    try:
        responses = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    pending = [ds for status, ds in responses if status.Status == 0xFF00]
    assert sorted(str(ds.StudyDescription) for ds in pending) == [f"study {n}" for n in range(5)]
    assert responses[-1][0].Status == 0x0000
    # Control headers: 0x03 last command fragment, 0x02 last data set fragment.
    assert received[:5] == [[0x03, 0x02]] * 5
    assert received[5] == [0x03]  # the final response has no identifier
