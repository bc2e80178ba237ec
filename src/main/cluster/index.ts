export {
  AUTHORITY_ENV,
  type AuthorityHandle,
  type AuthorityServerOptions,
  clusterAuthority,
  type StandaloneAuthorityOptions,
  startAuthority,
  startClusterBroker,
} from './cluster.js';
