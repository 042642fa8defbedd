"""Limits every parser obeys: what a hostile or broken file can cost is bounded by these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ParserConfig(BaseModel):
    """Parser limits; part of a curation job's config (and so of its dataset version's hash)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_record_bytes: int = Field(
        default=1 << 20, ge=1024,
        description="largest line, JSON record, CSV row or PDF page kept; larger ones are quarantined as "
                    "oversized_record (Markdown/HTML sections and text chunks are split at this size instead)")
    max_archive_ratio: float = Field(
        default=100.0, gt=1.0,
        description="zip bomb guard: most uncompressed/compressed bytes of an archive member (checked once a "
                    "member has expanded past 1 MiB)")
    max_archive_bytes: int = Field(
        default=1 << 30, ge=1 << 20,
        description="zip bomb guard: most uncompressed bytes read from one archive object, all members together")
    max_archive_members: int = Field(
        default=10_000, ge=1, description="zip bomb guard: most members of one zip file")
    max_archive_depth: int = Field(
        default=2, ge=0, description="archives nested deeper than this inside an archive are refused")
    text_chunk_bytes: int = Field(
        default=4096, ge=256,
        description="plain text and source code are cut into chunks of about this size, at blank lines")
