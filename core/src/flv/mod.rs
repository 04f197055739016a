//! FLV tags: parsing tag headers and classifying audio/video payloads.
