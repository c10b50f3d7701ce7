"""qwen-react: agent."""
