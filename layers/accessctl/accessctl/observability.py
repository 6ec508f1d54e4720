"""The Powertools objects, created once and shared by every function."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "accessctl"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=SERVICE, service=SERVICE)
