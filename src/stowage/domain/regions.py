"""AWS partitions and their region codes."""

from __future__ import annotations

PARTITION_REGIONS: dict[str, tuple[str, ...]] = {
    "aws": (
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "af-south-1",
        "ap-east-1",
        "ap-east-2",
        "ap-south-1",
        "ap-south-2",
        "ap-southeast-1",
        "ap-southeast-2",
        "ap-southeast-3",
        "ap-southeast-4",
        "ap-southeast-5",
        "ap-southeast-6",
        "ap-southeast-7",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-northeast-3",
        "ca-central-1",
        "ca-west-1",
        "eu-central-1",
        "eu-central-2",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "eu-south-1",
        "eu-south-2",
        "eu-north-1",
        "il-central-1",
        "me-south-1",
        "me-central-1",
        "mx-central-1",
        "sa-east-1",
    ),
    "aws-us-gov": ("us-gov-east-1", "us-gov-west-1"),
    "aws-cn": ("cn-north-1", "cn-northwest-1"),
}

REGION_PARTITION: dict[str, str] = {
    region: partition for partition, regions in PARTITION_REGIONS.items() for region in regions
}

ALL_REGIONS: tuple[str, ...] = tuple(REGION_PARTITION)


def partition_for_region(region: str) -> str:
    """The partition of a region code; unknown codes (s3-compatible) fall back to ``aws``."""
    if region in REGION_PARTITION:
        return REGION_PARTITION[region]
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws"
