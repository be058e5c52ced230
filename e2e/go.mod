module github.com/audiomill/audiomill/e2e

go 1.26.0

require github.com/audiomill/audiomill/platform v0.0.0

replace github.com/audiomill/audiomill/platform => ../platform
