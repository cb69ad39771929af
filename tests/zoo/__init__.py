"""The conformance zoo: foreign architectures (torchvision, Hugging Face, plain torch) at tiny sizes,
run through every public entry point by ``tests/test_zoo.py``; ``render_table`` writes the outcome
into ``docs/compatibility.md``."""
