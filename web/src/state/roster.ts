// Roster state: contacts, their live presence per resource, and incoming subscription requests (pure reducer).

export type Show = 'chat' | 'online' | 'away' | 'xa' | 'dnd' | 'offline';
export type Subscription = 'none' | 'to' | 'from' | 'both';

export interface RosterItem {
  jid: string;
  name?: string;
  subscription: Subscription | 'remove';
  ask?: boolean;
  groups?: string[];
}

export interface ResourcePresence {
  show: Exclude<Show, 'offline'>;
  status: string;
  priority: number;
}

export interface Contact {
  jid: string;
  name: string;
  subscription: Subscription;
  /** We asked to see their presence and they have not answered yet. */
  ask: boolean;
  groups: string[];
  resources: Record<string, ResourcePresence>;
  /** Status text of their last unavailable presence, shown while offline. */
  offlineStatus: string;
}

export interface RosterState {
  contacts: Record<string, Contact>;
  /** Bare JIDs that asked to see our presence, oldest first. */
  requests: string[];
}

export type RosterAction =
  | { type: 'roster-loaded'; items: RosterItem[] }
  | { type: 'roster-push'; item: RosterItem }
  | { type: 'available'; jid: string; resource: string; show: Exclude<Show, 'offline'>; status: string; priority: number }
  | { type: 'unavailable'; jid: string; resource: string; status: string }
  | { type: 'subscribe-request'; jid: string }
  | { type: 'request-handled'; jid: string }
  | { type: 'all-offline' };

export const emptyRoster: RosterState = { contacts: {}, requests: [] };

const SHOW_RANK: Record<Show, number> = { chat: 5, online: 4, away: 3, xa: 2, dnd: 1, offline: 0 };

function newContact(item: RosterItem, old?: Contact): Contact {
  return {
    jid: item.jid,
    name: item.name ?? '',
    subscription: item.subscription === 'remove' ? 'none' : item.subscription,
    ask: !!item.ask,
    groups: item.groups ?? [],
    resources: old?.resources ?? {},
    offlineStatus: old?.offlineStatus ?? '',
  };
}

export function rosterReducer(state: RosterState, action: RosterAction): RosterState {
  switch (action.type) {
    case 'roster-loaded': {
      const contacts: Record<string, Contact> = {};
      for (const item of action.items) {
        if (item.subscription === 'remove') continue;
        contacts[item.jid] = newContact(item, state.contacts[item.jid]);
      }
      return { ...state, contacts };
    }
    case 'roster-push': {
      const contacts = { ...state.contacts };
      if (action.item.subscription === 'remove') {
        delete contacts[action.item.jid];
      } else {
        contacts[action.item.jid] = newContact(action.item, contacts[action.item.jid]);
      }
      // A contact we now share presence with (from/both) no longer has a pending request.
      const sub = action.item.subscription;
      const requests =
        sub === 'from' || sub === 'both'
          ? state.requests.filter((j) => j !== action.item.jid)
          : state.requests;
      return { contacts, requests };
    }
    case 'available':
    case 'unavailable': {
      const c = state.contacts[action.jid];
      if (!c) return state;
      const resources = { ...c.resources };
      let offlineStatus = c.offlineStatus;
      if (action.type === 'available') {
        resources[action.resource] = { show: action.show, status: action.status, priority: action.priority };
      } else if (action.resource) {
        delete resources[action.resource];
        offlineStatus = action.status;
      } else {
        for (const r of Object.keys(resources)) delete resources[r];
        offlineStatus = action.status;
      }
      return { ...state, contacts: { ...state.contacts, [action.jid]: { ...c, resources, offlineStatus } } };
    }
    case 'subscribe-request': {
      if (state.requests.includes(action.jid)) return state;
      return { ...state, requests: [...state.requests, action.jid] };
    }
    case 'request-handled':
      return { ...state, requests: state.requests.filter((j) => j !== action.jid) };
    case 'all-offline': {
      const contacts: Record<string, Contact> = {};
      for (const [j, c] of Object.entries(state.contacts)) contacts[j] = { ...c, resources: {} };
      return { ...state, contacts };
    }
  }
}

/** The presence to show for a contact: their most available resource (priority first). */
export function bestPresence(c: Contact): { show: Show; status: string } {
  let best: ResourcePresence | null = null;
  for (const p of Object.values(c.resources)) {
    if (
      !best ||
      p.priority > best.priority ||
      (p.priority === best.priority && SHOW_RANK[p.show] > SHOW_RANK[best.show])
    ) {
      best = p;
    }
  }
  return best ? { show: best.show, status: best.status } : { show: 'offline', status: c.offlineStatus };
}

export function displayName(c: Pick<Contact, 'jid' | 'name'>): string {
  return c.name || c.jid.split('@')[0] || c.jid;
}

/** Contacts sorted for the list: available first (by show), then by name. */
export function sortedContacts(state: RosterState): Contact[] {
  return Object.values(state.contacts).sort((a, b) => {
    const ra = SHOW_RANK[bestPresence(a).show] > 0 ? 1 : 0;
    const rb = SHOW_RANK[bestPresence(b).show] > 0 ? 1 : 0;
    if (ra !== rb) return rb - ra;
    return displayName(a).localeCompare(displayName(b));
  });
}

export const SHOW_LABELS: Record<Show, string> = {
  chat: 'Free to chat',
  online: 'Online',
  away: 'Away',
  xa: 'Extended away',
  dnd: 'Do not disturb',
  offline: 'Offline',
};

/** The <show/> value of a presence stanza (absent means online). */
export function parseShow(show: string | null | undefined): Exclude<Show, 'offline'> {
  switch (show) {
    case 'chat':
    case 'away':
    case 'xa':
    case 'dnd':
      return show;
    default:
      return 'online';
  }
}
