# Shortcuts for the documented commands; test.sh does the work (and needs root).
.PHONY: test reliability

test:
	./test.sh

reliability:
	./test.sh --reliability
