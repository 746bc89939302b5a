// Unit tests for JID parsing and completion.
import { describe, expect, it } from 'vitest';
import { bareJid, completeJid, domainForHost, localName, parseJid, resourceOf } from '../src/jid';

describe('jid', () => {
  it('parses full, bare and domain JIDs', () => {
    expect(parseJid('Alice@Example.org/phone')).toEqual({ local: 'alice', domain: 'example.org', resource: 'phone' });
    expect(parseJid('example.org')).toEqual({ local: '', domain: 'example.org', resource: '' });
    expect(parseJid('a@b/c/d')?.resource).toBe('c/d');
  });
  it('rejects unusable input', () => {
    for (const bad of ['', '@example.org', 'a@', 'a b@c', 'a@b/', 'a"b@c']) expect(parseJid(bad)).toBeNull();
  });
  it('bare, resource and local name', () => {
    expect(bareJid('bob@localhost/x')).toBe('bob@localhost');
    expect(resourceOf('bob@localhost/x/y')).toBe('x/y');
    expect(localName('bob@localhost')).toBe('bob');
    expect(localName('localhost')).toBe('localhost');
  });
  it('completes typed usernames with the domain', () => {
    expect(completeJid('alice', 'localhost')).toBe('alice@localhost');
    expect(completeJid(' bob@example.org ', 'localhost')).toBe('bob@example.org');
    expect(completeJid('bob@example.org/res', 'localhost')).toBe('bob@example.org');
    expect(completeJid('', 'localhost')).toBeNull();
    expect(completeJid('a b', 'localhost')).toBeNull();
  });
  it('maps loopback hosts to localhost', () => {
    expect(domainForHost('127.0.0.1')).toBe('localhost');
    expect(domainForHost('[::1]')).toBe('localhost');
    expect(domainForHost('Chat.Example.org')).toBe('chat.example.org');
  });
});
