"""What the deploy service runs: the DeploymentService API, its read models (its catalog of model
versions with their latest evaluation, the deployment list), the OpenAI-compatible gateway (TLS,
bearer tokens) and the deployment manager that brings up pools and moves traffic."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.deploy import catalog, deployment_view, grpc_api
from services.deploy.application import DeploymentApplication


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    projections = [catalog.PROJECTION, deployment_view.PROJECTION]
    if bus is None:  # read models only (replay)
        return ServiceParts(name="deploy", bindings=[grpc_api.binding(DeploymentApplication(engine))],
                        projections=projections)
    from services.common.auth.grpc_auth import Authenticator
    from services.common.auth.issuers import trusted_verifiers
    from services.common.auth.pki import ensure_local_pki
    from services.deploy.endpoints import EndpointGateway, ServedLog
    from services.deploy.gateway import RunningGateway
    from services.deploy.manager import DeploymentManager
    from services.deploy.pools import PoolLauncher
    from services.deploy.shadow_gates import presidio_pii_kinds

    pki = ensure_local_pki(config.pki_dir)
    front = EndpointGateway(Authenticator(verifiers=trusted_verifiers(config)))
    host, _, port = config.gateway_address.rpartition(":")
    running = RunningGateway(front, host or "127.0.0.1", int(port or 0), ssl_certfile=str(pki.server.cert),
                             ssl_keyfile=str(pki.server.key)).start()
    served = ServedLog(engine)
    launcher = PoolLauncher(config.storage_uri, config.models_dir, config.data_dir / "deploy",
                            engine=config.serving_engine)
    manager = DeploymentManager(engine, launcher, front, served, running, presidio_pii_kinds())
    environments = [e.strip() for e in config.deploy_environments.split(",") if e.strip()]
    app = DeploymentApplication(engine, manager, environments)

    def gateway_loop(stop: threading.Event) -> None:
        try:
            stop.wait()
        finally:
            running.stop()

    return ServiceParts(name="deploy", bindings=[grpc_api.binding(app)], projections=projections,
                        workers=[manager.run, served.run, gateway_loop])
