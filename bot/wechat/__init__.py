"""The WeChat protocol: callback security, crypto, parsing, replies and the API client."""
