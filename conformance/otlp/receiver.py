"""An OTLP/gRPC collector for tests, on OpenTelemetry's own Python bindings.

Usage: receiver.py <port>. Prints "listening" once serving, then one JSON line per
ExportMetricsServiceRequest or ExportTraceServiceRequest (protobuf's JSON mapping of the
decoded request: metrics lines hold "resourceMetrics", trace lines "resourceSpans").
"""
import sys
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsvc


def export(request, context):
    print(MessageToJson(request, indent=None), flush=True)
    return svc.ExportMetricsServiceResponse()


def export_traces(request, context):
    print(MessageToJson(request, indent=None), flush=True)
    return tsvc.ExportTraceServiceResponse()


def main():
    port = int(sys.argv[1])
    handler = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=svc.ExportMetricsServiceRequest.FromString,
                response_serializer=svc.ExportMetricsServiceResponse.SerializeToString,
            )
        },
    )
    traces = grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export_traces,
                request_deserializer=tsvc.ExportTraceServiceRequest.FromString,
                response_serializer=tsvc.ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler, traces))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
