// The fleet as the WatchFleet stream reports it: every (cluster, app)
// cell and every cluster, indexed by cluster, and the fleet rollouts, with
// subscribers told of each change. Views read it; only live.js writes it.

// byName sorts names as people read them: prod-2 before prod-10.
export const byName = new Intl.Collator("en", { numeric: true }).compare;

class FleetStore {
  // clusters are the ClusterInfo messages by cluster name.
  clusters = new Map();
  // cells are the FleetApp messages by cluster, then by app.
  cells = new Map();
  // unpublished are the FleetApp messages without a cluster, by app: the
  // applications the hub refuses and never published.
  unpublished = new Map();
  // rollouts are the FleetRollout messages by the hub's key,
  // "<kind>/<name>" (rolloutKey): a newer commit's rollout replaces the
  // older one under it.
  rollouts = new Map();
  // ready is set once a snapshot arrived.
  ready = false;

  #snapshots = 0;
  #cellsPerApp = new Map();
  #clusterNames = null;
  #appNames = null;
  #subscribers = new Set();

  // apply folds a WatchFleetResponse into the state and tells the
  // subscribers what changed: {snapshot, reconnected, apps, clusters,
  // rollouts, events}, apps being the changed and removed cells, clusters
  // the changed and removed names, rollouts the changed and removed keys.
  apply(message) {
    const snapshot = Boolean(message.snapshot);
    if (snapshot) {
      this.#reset();
      this.ready = true;
      this.#snapshots++;
    }
    const apps = [];
    const clusters = [];
    for (const cell of message.apps ?? []) {
      if (cell.cluster) this.#setCell(cell);
      else this.unpublished.set(cell.app, cell);
      apps.push(cell);
    }
    for (const cell of message.removedApps ?? []) {
      if (cell.cluster) this.#deleteCell(cell.cluster, cell.app);
      else this.unpublished.delete(cell.app);
      apps.push(cell);
    }
    for (const info of message.clusters ?? []) {
      const name = info.registration?.name ?? "";
      if (!this.clusters.has(name)) this.#clusterNames = null;
      this.clusters.set(name, info);
      clusters.push(name);
    }
    for (const name of message.removedClusters ?? []) {
      for (const app of [...(this.cells.get(name)?.keys() ?? [])]) this.#deleteCell(name, app);
      this.clusters.delete(name);
      this.cells.delete(name);
      this.#clusterNames = null;
      clusters.push(name);
    }
    const rollouts = [];
    for (const r of message.fleetRollouts ?? []) {
      const key = rolloutKey(r);
      this.rollouts.set(key, r);
      rollouts.push(key);
    }
    for (const key of message.removedFleetRollouts ?? []) {
      this.rollouts.delete(key);
      rollouts.push(key);
    }
    const change = { snapshot, reconnected: snapshot && this.#snapshots > 1, apps, clusters, rollouts, events: message.events ?? [] };
    for (const subscriber of this.#subscribers) subscriber(change);
  }

  // clear forgets the fleet, on sign-out.
  clear() {
    this.#reset();
    this.ready = false;
    this.#snapshots = 0;
  }

  // subscribe calls fn with every change; it returns the unsubscribe
  // function.
  subscribe(fn) {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  // clusterNames are the clusters, sorted: those the hub knows and those
  // with cells.
  clusterNames() {
    this.#clusterNames ??= [...new Set([...this.clusters.keys(), ...this.cells.keys()])].sort(byName);
    return this.#clusterNames;
  }

  // appNames are the applications of every cell, sorted.
  appNames() {
    this.#appNames ??= [...this.#cellsPerApp.keys()].sort(byName);
    return this.#appNames;
  }

  // cell is the FleetApp of app in cluster, or undefined.
  cell(cluster, app) {
    return this.cells.get(cluster)?.get(app);
  }

  // cellCount is how many (cluster, app) cells there are.
  cellCount() {
    let n = 0;
    for (const apps of this.cells.values()) n += apps.size;
    return n;
  }

  // rolloutNamed is the fleet rollout of the ApplicationSet or Application
  // name, an ApplicationSet's first as the hub's API finds it, or
  // undefined.
  rolloutNamed(name) {
    return this.rollouts.get(`ApplicationSet/${name}`) ?? this.rollouts.get(`Application/${name}`);
  }

  // rolloutsOf are the fleet rollouts that release app, by key, each as
  // {rollout, waves}, waves being the indexes of the waves app is in.
  rolloutsOf(app) {
    const out = [];
    for (const key of [...this.rollouts.keys()].sort(byName)) {
      const rollout = this.rollouts.get(key);
      const waves = (rollout.waves ?? []).filter((w) => (w.targets ?? []).some((t) => t.app === app)).map((w) => w.index ?? 0);
      if (waves.length) out.push({ rollout, waves });
    }
    return out;
  }

  #reset() {
    this.rollouts = new Map();
    this.clusters = new Map();
    this.cells = new Map();
    this.unpublished = new Map();
    this.#cellsPerApp = new Map();
    this.#clusterNames = null;
    this.#appNames = null;
  }

  #setCell(cell) {
    let apps = this.cells.get(cell.cluster);
    if (!apps) {
      apps = new Map();
      this.cells.set(cell.cluster, apps);
      this.#clusterNames = null;
    }
    if (!apps.has(cell.app)) {
      const n = this.#cellsPerApp.get(cell.app) ?? 0;
      if (n === 0) this.#appNames = null;
      this.#cellsPerApp.set(cell.app, n + 1);
    }
    apps.set(cell.app, cell);
  }

  #deleteCell(cluster, app) {
    const apps = this.cells.get(cluster);
    if (!apps?.delete(app)) return;
    if (apps.size === 0 && !this.clusters.has(cluster)) {
      this.cells.delete(cluster);
      this.#clusterNames = null;
    }
    const n = this.#cellsPerApp.get(app) - 1;
    if (n > 0) {
      this.#cellsPerApp.set(app, n);
    } else {
      this.#cellsPerApp.delete(app);
      this.#appNames = null;
    }
  }
}

// rolloutKey is the key the hub keeps a fleet rollout under.
export function rolloutKey(rollout) {
  return `${rollout.kind ?? ""}/${rollout.name ?? ""}`;
}

// fleet is the dashboard's one store.
export const fleet = new FleetStore();
