"""DatasetService over gRPC: translate messages, call the application, nothing else."""

from __future__ import annotations

import json
import threading
from typing import Iterator

import grpc

from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from services.common.grpc_server import ServiceBinding
from services.common.identity import caller_from_metadata, correlation_id_from_metadata
from services.ingest.application import DatasetApplication, RegisterRequest
from services.ingest.domain import DatasetState



def dataset_from_state(s: DatasetState) -> pb.Dataset:
    d = pb.Dataset(dataset_id=s.dataset_id, name=s.name, storage_uri=s.storage_uri, format_hint=s.format_hint,
                   classification=s.classification, checksum_sha256=s.checksum_sha256, file_count=s.file_count,
                   total_bytes=s.total_bytes, labels=dict(s.labels), created_by=s.created_by, version=s.version)
    d.created_at.FromMilliseconds(s.created_at_ms)
    return d


def dataset_from_row(r: dict) -> pb.Dataset:
    d = pb.Dataset(dataset_id=r["dataset_id"], name=r["name"], storage_uri=r["storage_uri"],
                   format_hint=r["format_hint"], classification=r["classification"],
                   checksum_sha256=r["checksum_sha256"], file_count=r["file_count"], total_bytes=r["total_bytes"],
                   labels=json.loads(r["labels_json"]), created_by=r["created_by"], version=r["version"])
    d.created_at.FromMilliseconds(r["created_at_ms"])
    return d


class DatasetServicer(pb_grpc.DatasetServiceServicer):
    def __init__(self, app: DatasetApplication, stop: threading.Event) -> None:
        self.app = app
        self.stop = stop

    def CreateDataset(self, request: pb.CreateDatasetRequest,
                      context: grpc.ServicerContext) -> pb.CreateDatasetResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        state = self.app.register(caller, RegisterRequest(
            name=request.name, storage_uri=request.storage_uri, classification=request.classification,
            format_hint=request.format_hint, checksum_sha256=request.checksum_sha256, labels=dict(request.labels),
            request_id=request.request_id), correlation_id=correlation_id_from_metadata(context.invocation_metadata()))
        return pb.CreateDatasetResponse(dataset=dataset_from_state(state))

    def GetDataset(self, request: pb.GetDatasetRequest, context: grpc.ServicerContext) -> pb.GetDatasetResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        return pb.GetDatasetResponse(dataset=dataset_from_state(self.app.get(caller, request.dataset_id)))

    def ListDatasets(self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext) -> pb.ListDatasetsResponse:
        caller = caller_from_metadata(context.invocation_metadata())
        rows, token = self.app.list(caller, request.page_size, request.page_token)
        return pb.ListDatasetsResponse(datasets=[dataset_from_row(r) for r in rows], next_page_token=token)

    def WatchDataset(self, request: pb.WatchDatasetRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.WatchDatasetResponse]:
        caller = caller_from_metadata(context.invocation_metadata())
        for event in self.app.watch(caller, request.dataset_id, context.is_active, self.stop):
            yield pb.WatchDatasetResponse(event=event)


def binding(app: DatasetApplication, stop: threading.Event) -> ServiceBinding:
    return ServiceBinding(full_name=pb.DESCRIPTOR.services_by_name["DatasetService"].full_name,
                          servicer=DatasetServicer(app, stop),
                          add_to_server=pb_grpc.add_DatasetServiceServicer_to_server)
