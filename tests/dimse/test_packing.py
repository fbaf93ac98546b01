"""One DIMSE message: command set and data set in PDUs of their own, written together."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from pacsdash.dimse.packing import PDU_HEADER, PDV_ITEM_OVERHEAD, PDUGroup, encode_group, pack, writes
from tests.conftest import SCU_AET
from tests.factories import make_instance


def primitive(*datas: bytes) -> P_DATA:
    pdata = P_DATA()
    pdata.presentation_data_value_list.extend((1, data) for data in datas)
    return pdata


def items(primitives) -> list[list[bytes]]:
    return [[data for _, data in p.presentation_data_value_list] for p in primitives]


def sent_pdus(data: bytes) -> list[list[int]]:
    """The control headers of the PDV items of each P-DATA-TF PDU in ``data``
    (PS3.8 9.3.5, E.2); other PDUs as an empty list."""
    pdus = []
    offset = 0
    while offset < len(data):
        pdu_type, length = data[offset], struct.unpack_from(">L", data, offset + 2)[0]
        controls = []
        if pdu_type == 0x04:
            item = offset + PDU_HEADER
            while item < offset + PDU_HEADER + length:
                (item_length,) = struct.unpack_from(">L", data, item)
                controls.append(data[item + 5])
                item += 4 + item_length
        pdus.append(controls)
        offset += PDU_HEADER + length
    return pdus


def test_pack_keeps_command_and_data_set_apart():
    """GDCM reads a data set only from a PDU of its own (INTEROP.md)."""
    packed = list(pack([primitive(b"\x03cmd"), primitive(b"\x02data")], 16382))
    assert items(packed) == [[b"\x03cmd"], [b"\x02data"]]
    assert items(pack([primitive(b"\x03cmd", b"\x02data")], 0)) == [[b"\x03cmd"], [b"\x02data"]]


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


def test_pack_without_a_limit_makes_one_pdu_of_each_kind():
    datas = [b"\x01" + bytes(100_000), b"\x03" + bytes(10), b"\x00" + bytes(5), b"\x02" + bytes(200_000)]
    assert items(pack([primitive(d) for d in datas], 0)) == [datas[:2], datas[2:]]


def test_a_small_message_is_one_write_of_its_pdus():
    pdus = list(pack([primitive(b"\x03cmd"), primitive(b"\x02data")], 0))
    [write] = list(writes(pdus))
    assert isinstance(write, PDUGroup)
    assert write.pdus == pdus
    assert items([write]) == [[b"\x03cmd", b"\x02data"]]  # every PDV, in order
    assert sent_pdus(encode_group(write)) == [[0x03], [0x02]]


def test_a_group_is_encoded_as_pynetdicom_encodes_each_pdu():
    pdus = [primitive(b"\x01" + bytes(3), b"\x03" + bytes(range(200))), primitive(b"\x00" + b"x" * 70_000)]
    other_context = P_DATA()
    other_context.presentation_data_value_list.append((255, b"\x02" + b"end"))
    group = PDUGroup([*pdus, other_context])
    assert encode_group(group) == b"".join(P_DATA_TF(p).encode() for p in group.pdus)


def test_a_single_pdu_is_sent_as_itself():
    only = primitive(b"\x03cmd")
    assert list(writes([only])) == [only]
    assert list(writes([])) == []


def test_a_large_message_is_written_pdu_by_pdu():
    pdus = [primitive(b"\x03" + bytes(50)), primitive(b"\x00" + bytes(100)), primitive(b"\x02" + bytes(100))]
    assert list(writes(pdus, limit=200)) == pdus
    [group] = list(writes(pdus, limit=1000))
    assert group.pdus == pdus


@pytest.mark.parametrize("maximum_pdu", [16382, 0])
def test_each_match_is_a_command_pdu_and_an_identifier_pdu_in_one_write(node, archive, maximum_pdu):
    """A pending C-FIND response: its command set and its identifier each in
    a P-DATA-TF of its own, both sent with one system call; and it decodes."""
    for number in range(5):
        archive.store_bytes(make_instance(PatientID="PACK", StudyDescription=f"study {number}"))
    received: list[list[int]] = []
    writes_: list[bytes] = []

    def on_pdu(event):
        if isinstance(event.pdu, P_DATA_TF):
            received.append([item.data[0] for item in event.pdu.presentation_data_value_items])

    announced: list[list[int]] = []

    def on_sent(event):
        writes_.append(bytes(event.data))

    def on_pdu_sent(event):
        if isinstance(event.pdu, P_DATA_TF):
            announced.append([item.data[0] for item in event.pdu.presentation_data_value_items])

    node.server.bind(evt.EVT_DATA_SENT, on_sent)
    node.server.bind(evt.EVT_PDU_SENT, on_pdu_sent)  # still announced one by one
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
    assert received == [[0x03], [0x02]] * 5 + [[0x03]]  # the final response has no identifier
    p_data_writes = [sent_pdus(data) for data in writes_ if data[0] == 0x04]
    assert p_data_writes == [[[0x03], [0x02]]] * 5 + [[[0x03]]]
    assert announced == received


def test_a_retrieved_instance_is_a_command_pdu_and_a_data_set_pdu(node, archive):
    """A C-STORE sub-operation (here of a C-GET) lays out its PDUs the same way."""
    archive.store_bytes(make_instance(PatientID="PACKGET", StudyInstanceUID="1.2.826.0.1.3680043.10.1474.9.42"))
    received: list[list[int]] = []

    def on_pdu(event):
        if isinstance(event.pdu, P_DATA_TF):
            received.append([item.data[0] for item in event.pdu.presentation_data_value_items])

    ae = AE(ae_title=SCU_AET)
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", node.port, ae_title="PACSDASH", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_PDU_RECV, on_pdu), (evt.EVT_C_STORE, lambda event: 0x0000)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = "1.2.826.0.1.3680043.10.1474.9.42"
    try:
        responses = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    assert responses[-1][0].Status == 0x0000
    assert responses[-1][0].NumberOfCompletedSuboperations == 1
    # The C-STORE-RQ (command, data set), then the C-GET-RSPs (no identifier).
    assert received == [[0x03], [0x02], [0x03], [0x03]]
