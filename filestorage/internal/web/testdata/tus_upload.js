// Uploads a file with tus-js-client (as an off-the-shelf tus client would)
// and reports every PATCH's Upload-Offset, one JSON line per event.
// Env: TUS_ENDPOINT, TUS_TOKEN, TUS_FILE, TUS_PATH; NODE_PATH finds tus-js-client.
'use strict'
const fs = require('fs')
const tus = require('tus-js-client')

const file = process.env.TUS_FILE
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint: process.env.TUS_ENDPOINT,
  uploadSize: fs.statSync(file).size,
  headers: { Authorization: 'Bearer ' + process.env.TUS_TOKEN },
  metadata: { path: process.env.TUS_PATH, contentType: 'application/octet-stream' },
  retryDelays: [0, 200, 500, 1000, 2000],
  onBeforeRequest (req) {
    if (req.getMethod() === 'PATCH') {
      console.log(JSON.stringify({ event: 'patch', offset: Number(req.getHeader('Upload-Offset')) }))
    }
  },
  onError (err) {
    console.log(JSON.stringify({ event: 'error', message: String(err) }))
    process.exit(1)
  },
  onSuccess () {
    console.log(JSON.stringify({ event: 'success', url: upload.url }))
  }
})
upload.start()
