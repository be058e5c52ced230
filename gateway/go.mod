module github.com/audiomill/audiomill/gateway

go 1.26.0

require github.com/audiomill/audiomill/platform v0.0.0

// The platform module lives in this repository; go.work uses it too, and this
// replace keeps a build outside the workspace (GOWORK=off, Dockerfiles) working.
replace github.com/audiomill/audiomill/platform => ../platform
