"""Tests for qwen-react."""
