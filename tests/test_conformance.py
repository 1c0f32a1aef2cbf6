"""The public conformance suite, run on every first-party store in both flavours."""

from coatcheck.testing import StoreConformance


class TestStores(StoreConformance):
    pass
