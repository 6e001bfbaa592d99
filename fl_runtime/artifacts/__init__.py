"""Third-party artifacts fedge deploys, resolved once into a local cache.

``fetch`` fills a cache directory (default ``.artifacts`` or ``$FL_ARTIFACTS_DIR``)::

    kafka/<version>/{bin,config,libs}   Apache Kafka from Maven (or the official tarball)
    spark-kafka/<pyspark version>/      Spark's Kafka connector jars for spark.jars
    wheels/                             fl_runtime and every wheel to install it offline
    manifest.json                       each file's sha256, size and source

A second fetch checks the manifest and the checksums first and makes no
network request when everything is intact.
"""

from fl_runtime.artifacts._fetch import (
    default_cache_dir,
    fetch,
    kafka_home,
    spark_kafka_jars,
    verify,
)
from fl_runtime.artifacts._kafka import DEFAULT_KAFKA_VERSION
from fl_runtime.artifacts._manifest import FileEntry, Manifest, Step
from fl_runtime.artifacts._maven import DEFAULT_MAVEN_REPO
from fl_runtime.artifacts._wheels import expand_platform

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "DEFAULT_MAVEN_REPO",
    "FileEntry",
    "Manifest",
    "Step",
    "default_cache_dir",
    "expand_platform",
    "fetch",
    "kafka_home",
    "spark_kafka_jars",
    "verify",
]
