// The SSH endpoint into sandboxes: the listener and its login (server.ts), sessions (session.ts),
// SFTP (sftp.ts), `ssh -L` (forward.ts) and the host key (host-key.ts).
export { SshServer, type SshAuthenticator, type SshServerOptions } from './server.js'
export { loadSandboxSshHostKey, SSH_HOST_KEY_FILE } from './host-key.js'
export type { Login } from './session.js'
