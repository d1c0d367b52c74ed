"""medvlm-trl."""
