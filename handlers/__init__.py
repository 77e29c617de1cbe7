"""Platform adapters: parse a platform's input into one bot call, render the result."""
