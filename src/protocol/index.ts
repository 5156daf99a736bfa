/**
 * The longlink protocol (docs/PROTOCOL.md): messages carried one per frame, their pure
 * encoder/decoder, HELLO negotiation, payload codecs and request ids. Nothing here touches a
 * socket.
 */

export { errorToMessage, remoteErrorFromMessage } from './error-message.js';
export {
  ErrorCode,
  ProtocolError,
  type ProtocolErrorOptions,
  RemoteError,
  type RemoteErrorOptions,
} from './errors.js';
export {
  acceptHello,
  answerHello,
  decodeHelloParams,
  encodeHelloParams,
  formatVersion,
  HELLO_DEFAULTS,
  HELLO_MAX_FRAME_LENGTH,
  type HelloAgreement,
  type HelloPolicy,
  isValidCodecName,
  MAX_HELLO_CREDENTIAL_LENGTH,
  MAX_HELLO_NAME_LENGTH,
  MIN_MAX_FRAME_LENGTH,
  versionMajor,
  versionMinor,
} from './hello.js';
export { jsonCodec, type PayloadCodec, PayloadCodecRegistry, rawCodec } from './payload.js';
export { type Outstanding, RequestIdAllocator } from './request-id.js';
export {
  type CancelMessage,
  type ErrorMessage,
  type GoawayMessage,
  type HelloMessage,
  type HelloParams,
  MAX_NAME_BYTES,
  MAX_REQUEST_ID,
  MAX_ROOM_SEQ,
  MAX_TEXT_BYTES,
  METADATA_LIMITS,
  type Message,
  MessageKind,
  messageKindName,
  NotifyFlag,
  type NotifyMessage,
  PING_DATA_BYTES,
  type PingMessage,
  type PongMessage,
  PROTOCOL_VERSION,
  RequestFlag,
  type RequestMessage,
  type ResponseMessage,
} from './types.js';
export {
  decodeMessage,
  encodeMessage,
  encodePing,
  encodePong,
  INLINE_PAYLOAD_MAX,
  pingKind,
  pingSequence,
  writeSeq,
} from './wire.js';
