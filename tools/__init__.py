"""qwen-react: tools."""
