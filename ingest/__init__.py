"""ingest: the pipeline's contract — topics, event schemas, and the storage/transport adapters.

Public surface (light imports only; the boto3 and kafka-python adapters live in
``ingest.s3`` and ``ingest.kafka`` and are imported where used):

- :class:`ObjectStore` and :class:`LocalObjectStore`; ``ingest.s3.S3ObjectStore``.
- :class:`EventProducer`, :class:`EventConsumer`, :class:`TopicAdmin`, :class:`Record`,
  :class:`TopicPartition`; the embedded SQLite log; ``ingest.kafka`` for Kafka.
- Errors: :class:`IngestError`, split into :class:`RetryableIngestError` and
  :class:`PermanentIngestError`.
"""

from ingest.embedded_log import EmbeddedAdmin, EmbeddedConsumer, EmbeddedLog, EmbeddedProducer
from ingest.errors import (
    EndpointUnreachable,
    IngestError,
    InvalidRange,
    ObjectNotFound,
    PermanentIngestError,
    RetryableIngestError,
    UploadNotFound,
)
from ingest.eventlog import EventConsumer, EventProducer, Record, TopicAdmin, TopicPartition
from ingest.localstore import LocalObjectStore
from ingest.objectstore import MIN_PART_SIZE, ObjectInfo, ObjectStore, PartInfo

__all__ = [
    "MIN_PART_SIZE",
    "EmbeddedAdmin",
    "EmbeddedConsumer",
    "EmbeddedLog",
    "EmbeddedProducer",
    "EndpointUnreachable",
    "EventConsumer",
    "EventProducer",
    "IngestError",
    "InvalidRange",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PartInfo",
    "PermanentIngestError",
    "Record",
    "RetryableIngestError",
    "TopicAdmin",
    "TopicPartition",
    "UploadNotFound",
]
