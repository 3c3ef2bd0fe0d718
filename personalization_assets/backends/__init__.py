"""Service backends behind the Dagster resources: Azure OpenAI (and OpenAI-compatible servers),
Azure AI Search and Azure AI Content Safety through their official SDKs, plus what they share:
retries with backoff (`retry`), the on-disk response cache (`cache`) and a bounded thread pool
(`concurrency`). Plain modules: no Dagster import; `defs/resources.py` wraps them as resources.
"""
