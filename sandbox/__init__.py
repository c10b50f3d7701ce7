"""qwen-react: sandbox."""
