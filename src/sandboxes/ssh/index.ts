// The SSH endpoint into sandboxes: the listener (listener.ts) and its login (login.ts), sessions
// (session.ts), SFTP (sftp.ts), `ssh -L` (forward.ts), the host key (host-key.ts), and an API
// replica's relay to the owning agent in a cluster (relay.ts).
export { clientHost, SshServer, type SshAuthenticator, type SshServerOptions } from './server.js'
export { setAgentSshPort, SshRelay, type SshRelayOptions } from './relay.js'
export { loadClusterSshHostKey, loadSandboxSshHostKey, SSH_HOST_KEY_FILE } from './host-key.js'
export type { Login } from './session.js'
