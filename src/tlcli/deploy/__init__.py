"""A trained run taken out of tlcli: exported to ONNX or TorchScript (``exporting``), and
quantised to int8 (``quantization``)."""
