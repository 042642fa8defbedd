"""Server reflection in both protocol versions: ``grpc.reflection.v1`` (what current grpcurl,
Postman, grpcui and the Go and Java reflection clients ask first) and ``grpc.reflection.v1alpha``
(what older clients ask).

grpcio-reflection implements only v1alpha. The v1 protocol is the same messages under another
package name, so the same wire bytes: the v1 service here is v1alpha's servicer behind a
handler registered under the v1 name, and the v1 file descriptor (v1alpha's, renamed) is added
to the default pool so that a client can also describe the reflection service itself.
"""

from __future__ import annotations

from typing import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _add_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = _V1_FILE, "grpc.reflection.v1"
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(proto.SerializeToString())


def enable(service_names: Sequence[str], server: grpc.Server) -> tuple[str, ...]:
    """Serve reflection (v1 and v1alpha) listing ``service_names`` plus both reflection services;
    returns the names listed."""
    _add_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, reflection.SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names)
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=alpha.ServerReflectionRequest.FromString,
            response_serializer=alpha.ServerReflectionResponse.SerializeToString)})
    server.add_generic_rpc_handlers((v1,))
    return names
