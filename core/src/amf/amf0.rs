//! AMF0 (placeholder until the AMF codec lands).
