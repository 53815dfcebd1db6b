"""An Echo server on gRPC C-core (the `grpcio` package), for interop tests.

Usage: grpcio_echo.py DELAY_SECONDS MIN_PING_INTERVAL_MS

Answers /echo.v1.Echo/Echo with the request's bytes (an EchoResponse with the same
message) after DELAY_SECONDS, sending nothing before. PINGs are policed as C-core does
by default (`Chttp2PingAbusePolicy`), with `grpc.http2.min_ping_interval_without_data_ms`
set to MIN_PING_INTERVAL_MS (C-core's default: 300000). Prints the port it listens on
(127.0.0.1), then serves until its standard input closes.
"""

import sys
import time
from concurrent import futures

import grpc


def main() -> None:
    delay = float(sys.argv[1])
    min_ping_ms = int(sys.argv[2])

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(delay)
        return request

    handler = grpc.method_handlers_generic_handler(
        "echo.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.http2.min_ping_interval_without_data_ms", min_ping_ms)],
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
