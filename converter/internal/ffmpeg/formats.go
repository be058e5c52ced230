package ffmpeg

import "strings"

// ProtocolWhitelist is what ffmpeg and ffprobe may open for their input
// (-protocol_whitelist): the local file the converter hands them, or a
// pipe. Anything the input names beyond it (http, tcp, udp, rtp, crypto,
// data, subfile, concat:…) is refused, however deeply nested.
const ProtocolWhitelist = "file,pipe"

// FormatWhitelist is the demuxers ffmpeg and ffprobe may use
// (-format_whitelist): containers of real video and audio, each of which
// reads only the file it is given. Left out on purpose: the formats whose
// "file" is a list of other files or URLs (hls and its .m3u8 playlists,
// dash, concat and ffconcat lists, image2 patterns, sdp, rtsp, tee), the
// raw and image formats, and everything else ffmpeg can probe. ffmpeg
// checks it before it reads anything beyond the first bytes of the input,
// so a playlist naming a file on the converter's disk fails as "not a
// video" without that file being opened.
//
// A demuxer's name may list several ("mov,mp4,m4a,3gp,3g2,mj2",
// "matroska,webm"); it is allowed when one of them is here.
const FormatWhitelist = "mov,mp4,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,mxf,dv," +
	"wav,w64,mp3,aac,flac,aiff,caf,ac3,eac3,amr,wv"

// FormatAllowed reports whether format, a demuxer's name as ffmpeg logs it
// and ffprobe's format_name ("mov,mp4,m4a,3gp,3g2,mj2"), is in
// FormatWhitelist (the same match ffmpeg makes).
func FormatAllowed(format string) bool {
	for name := range strings.SplitSeq(format, ",") {
		for allowed := range strings.SplitSeq(FormatWhitelist, ",") {
			if name == allowed {
				return true
			}
		}
	}
	return false
}

// inputArgs are the options in front of every input ffmpeg or ffprobe
// opens, then the input itself as a file: URL (a path with a colon in it is
// never taken for a protocol).
func inputArgs(path string) []string {
	return []string{"-protocol_whitelist", ProtocolWhitelist, "-format_whitelist", FormatWhitelist, "-i", "file:" + path}
}
