//! AMF3 (placeholder until the AMF codec lands).
